//! imgpipe's image core. Pure Rust modules below; `python` holds the PyO3 bindings.

mod alloc;
pub mod attention;
pub mod cicp;
pub mod color;
pub mod decode;
pub mod encode;
pub mod error;
pub mod exif;
#[cfg(all(test, target_os = "linux"))]
mod guard_pages;
pub mod header;
pub mod image;
pub mod isobmff;
pub mod limits;
pub mod orient;
mod palette;
pub mod pipeline;
pub mod rendition;
pub mod resize;
pub mod thumbnail;

#[cfg(feature = "python")]
mod python;

#[global_allocator]
static ALLOC: alloc::PixelAlloc = alloc::PixelAlloc;

#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _imgcore(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    python::register(m)
}
