//! PyO3 bindings: arguments are parsed and validated first, the work runs with the GIL
//! released (`without_gil`), and results become Python objects after it is re-acquired.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::decode::External;
use crate::encode::OutFormat;
use crate::error::{self, ImgError};
use crate::header::Header;
use crate::palette::PaletteResult;
use crate::pipeline::{self, CropMode, Options};
use crate::rendition::{Focus, Spec};

/// The one place the GIL is released; the closure sees only Rust data.
fn without_gil<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    py.detach(f)
}

#[pyclass(frozen, module = "imgpipe._imgcore")]
pub struct ImageInfo {
    #[pyo3(get)]
    format: &'static str,
    #[pyo3(get)]
    width: u32,
    #[pyo3(get)]
    height: u32,
    #[pyo3(get)]
    display_width: u32,
    #[pyo3(get)]
    display_height: u32,
    #[pyo3(get)]
    orientation: u8,
    #[pyo3(get)]
    has_alpha: bool,
    #[pyo3(get)]
    frame_count: u32,
    #[pyo3(get)]
    has_icc: bool,
}

impl From<&Header> for ImageInfo {
    fn from(h: &Header) -> Self {
        let (display_width, display_height) = h.display_size();
        Self {
            format: h.format.name(),
            width: h.width,
            height: h.height,
            display_width,
            display_height,
            orientation: h.orientation,
            has_alpha: h.has_alpha,
            frame_count: h.frame_count,
            has_icc: h.has_icc,
        }
    }
}

#[pymethods]
impl ImageInfo {
    fn __repr__(&self) -> String {
        format!(
            "ImageInfo(format={:?}, width={}, height={}, orientation={}, has_alpha={}, frame_count={}, has_icc={})",
            self.format, self.width, self.height, self.orientation, self.has_alpha, self.frame_count, self.has_icc
        )
    }
}

#[pyclass(frozen, module = "imgpipe._imgcore")]
pub struct Output {
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    format: &'static str,
    #[pyo3(get)]
    width: u32,
    #[pyo3(get)]
    height: u32,
    #[pyo3(get)]
    data: Py<PyBytes>,
}

#[pymethods]
impl Output {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Output(name={:?}, format={:?}, width={}, height={}, bytes={})",
            self.name,
            self.format,
            self.width,
            self.height,
            self.data.bind(py).as_bytes().len()
        )
    }
}

#[pyclass(frozen, module = "imgpipe._imgcore")]
pub struct RawRendition {
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    width: u32,
    #[pyo3(get)]
    height: u32,
    #[pyo3(get)]
    channels: usize,
    #[pyo3(get)]
    pixels: Py<PyBytes>,
}

#[pymethods]
impl RawRendition {
    fn __repr__(&self) -> String {
        format!(
            "RawRendition(name={:?}, width={}, height={}, channels={})",
            self.name, self.width, self.height, self.channels
        )
    }
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

#[pyclass(frozen, module = "imgpipe._imgcore")]
pub struct Palette {
    #[pyo3(get)]
    colors: Vec<(String, f64)>,
    #[pyo3(get)]
    seed: String,
    #[pyo3(get)]
    seed_candidates: Vec<String>,
    #[pyo3(get)]
    thumbhash: String,
}

impl From<PaletteResult> for Palette {
    fn from(p: PaletteResult) -> Self {
        Self {
            colors: p
                .colors
                .into_iter()
                .map(|(c, share)| (hex(c), f64::from(share)))
                .collect(),
            seed: hex(p.seed),
            seed_candidates: p.seed_candidates.into_iter().map(hex).collect(),
            thumbhash: p.thumbhash,
        }
    }
}

#[pymethods]
impl Palette {
    fn __repr__(&self) -> String {
        format!(
            "Palette(colors={:?}, seed={:?}, seed_candidates={:?}, thumbhash={:?})",
            self.colors, self.seed, self.seed_candidates, self.thumbhash
        )
    }
}

#[pyclass(frozen, module = "imgpipe._imgcore")]
pub struct Processed {
    #[pyo3(get)]
    info: Py<ImageInfo>,
    #[pyo3(get)]
    outputs: Vec<Py<Output>>,
    #[pyo3(get)]
    palette: Option<Py<Palette>>,
    timings: Vec<(&'static str, f64)>,
    #[pyo3(get)]
    rendered: Vec<Py<RawRendition>>,
}

#[pymethods]
impl Processed {
    #[getter]
    fn timings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.timings {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
}

/// Pixels decoded outside the core: (buffer, width, height, channels, stride, oriented).
type DecodedArg = (PyBuffer<u8>, u32, u32, usize, usize, bool);

/// Copies the caller's buffer while the GIL is held: its owner may free it once we return.
fn external(py: Python<'_>, decoded: Option<DecodedArg>) -> PyResult<Option<External>> {
    decoded
        .map(|(buf, width, height, channels, stride, oriented)| {
            Ok(External {
                width,
                height,
                channels,
                stride,
                data: buf.to_vec(py)?,
                oriented,
            })
        })
        .transpose()
}

fn to_specs(renditions: Vec<(u32, Option<u32>, bool)>) -> Vec<Spec> {
    renditions
        .into_iter()
        .map(|(width, height, cover)| Spec {
            width,
            height,
            cover,
        })
        .collect()
}

#[pyfunction]
#[pyo3(signature = (data, *, max_pixels = 100_000_000))]
fn probe(py: Python<'_>, data: &[u8], max_pixels: u64) -> PyResult<ImageInfo> {
    let h = without_gil(py, || pipeline::probe(data, max_pixels))?;
    Ok(ImageInfo::from(&h))
}

#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(signature = (data, renditions, *, palette = true, max_pixels = 100_000_000, jpeg_quality = 82,
    webp_quality = 80.0, webp_method = 4, formats = None, threads = 1, focus = None,
    crop = "attention", decoded = None, keep_pixels = false))]
fn process(
    py: Python<'_>,
    data: &[u8],
    renditions: Vec<(u32, Option<u32>, bool)>,
    palette: bool,
    max_pixels: u64,
    jpeg_quality: u8,
    webp_quality: f32,
    webp_method: i32,
    formats: Option<Vec<String>>,
    threads: usize,
    focus: Option<(f64, f64)>,
    crop: &str,
    decoded: Option<DecodedArg>,
    keep_pixels: bool,
) -> PyResult<Processed> {
    if !(1..=100).contains(&jpeg_quality) {
        return Err(PyValueError::new_err("jpeg_quality must be in 1..=100"));
    }
    if !(0.0..=100.0).contains(&webp_quality) {
        return Err(PyValueError::new_err("webp_quality must be in 0..=100"));
    }
    if !(0..=6).contains(&webp_method) {
        return Err(PyValueError::new_err("webp_method must be in 0..=6"));
    }
    if threads == 0 {
        return Err(PyValueError::new_err("threads must be at least 1"));
    }
    let formats = match formats {
        None => vec![OutFormat::Jpeg, OutFormat::WebP],
        Some(names) => names
            .iter()
            .map(|n| OutFormat::parse(n))
            .collect::<Result<Vec<_>, ImgError>>()?,
    };
    let focus = focus.map(|(x, y)| Focus::new(x, y)).transpose()?;
    let crop = CropMode::parse(crop)?;
    let opts = Options {
        max_pixels,
        jpeg_quality,
        jpeg_effort: crate::encode::JpegEffort::default(),
        webp_quality,
        webp_method,
        formats,
        threads,
        palette,
        focus,
        crop,
        keep_pixels,
    };
    let specs = to_specs(renditions);
    let external = external(py, decoded)?;
    let done = without_gil(py, || {
        pipeline::process_decoded(data, external, &specs, &opts)
    })?;
    let outputs = done
        .outputs
        .into_iter()
        .map(|o| {
            let data = PyBytes::new(py, &o.data).unbind();
            Py::new(
                py,
                Output {
                    name: o.name,
                    format: o.format.name(),
                    width: o.width,
                    height: o.height,
                    data,
                },
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Processed {
        info: Py::new(py, ImageInfo::from(&done.header))?,
        outputs,
        palette: done
            .palette
            .map(|p| Py::new(py, Palette::from(p)))
            .transpose()?,
        timings: done.timings.entries().to_vec(),
        rendered: done
            .rendered
            .into_iter()
            .map(|r| Py::new(py, raw(r.name, r.pixels, py)))
            .collect::<PyResult<Vec<_>>>()?,
    })
}

#[pyfunction]
#[pyo3(signature = (data, renditions, *, max_pixels = 100_000_000, decoded = None))]
fn render_raw(
    py: Python<'_>,
    data: &[u8],
    renditions: Vec<(u32, Option<u32>, bool)>,
    max_pixels: u64,
    decoded: Option<DecodedArg>,
) -> PyResult<Vec<RawRendition>> {
    let specs = to_specs(renditions);
    let external = external(py, decoded)?;
    let done = without_gil(py, || {
        pipeline::render_raw(data, external, &specs, max_pixels)
    })?;
    Ok(done
        .into_iter()
        .map(|r| raw(r.name, r.pixels, py))
        .collect())
}

fn raw(name: String, pixels: crate::image::Pixels, py: Python<'_>) -> RawRendition {
    RawRendition {
        name,
        width: pixels.width,
        height: pixels.height,
        channels: pixels.channels,
        pixels: PyBytes::new(py, &pixels.data).unbind(),
    }
}

/// The window (left, top, width, height in display pixels) that `process` crops for a
/// `width` x `height` cover rendition placed by attention.
#[pyfunction]
#[pyo3(signature = (data, width, height, *, max_pixels = 100_000_000, decoded = None))]
fn attention_window(
    py: Python<'_>,
    data: &[u8],
    width: u32,
    height: u32,
    max_pixels: u64,
    decoded: Option<DecodedArg>,
) -> PyResult<(f64, f64, f64, f64)> {
    let external = external(py, decoded)?;
    let c = without_gil(py, || {
        pipeline::attention_window(data, external, width, height, max_pixels)
    })?;
    Ok((c.left, c.top, c.width, c.height))
}

/// The thumbnail `process` computes the palette from.
#[pyfunction]
#[pyo3(signature = (data, *, max_pixels = 100_000_000, decoded = None))]
fn palette_thumbnail(
    py: Python<'_>,
    data: &[u8],
    max_pixels: u64,
    decoded: Option<DecodedArg>,
) -> PyResult<RawRendition> {
    let external = external(py, decoded)?;
    let thumb = without_gil(py, || {
        pipeline::palette_thumbnail(data, external, max_pixels)
    })?;
    Ok(raw("palette".to_owned(), thumb, py))
}

#[pyfunction]
fn palette_from_pixels(
    py: Python<'_>,
    pixels: &[u8],
    width: u32,
    height: u32,
    channels: usize,
) -> PyResult<Palette> {
    if !matches!(channels, 3 | 4) {
        return Err(PyValueError::new_err("channels must be 3 or 4"));
    }
    let expected = crate::limits::buffer_len(width, height, channels)?;
    if width == 0 || height == 0 || pixels.len() != expected {
        return Err(PyValueError::new_err(format!(
            "expected {expected} bytes for {width}x{height}x{channels}, got {}",
            pixels.len()
        )));
    }
    let img = crate::image::Pixels {
        width,
        height,
        channels,
        data: pixels.to_vec(),
    };
    let result = without_gil(py, || pipeline::palette_of(&img));
    Ok(Palette::from(result))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    error::py::register(m)?;
    m.add_class::<ImageInfo>()?;
    m.add_class::<Output>()?;
    m.add_class::<RawRendition>()?;
    m.add_class::<Palette>()?;
    m.add_class::<Processed>()?;
    m.add_function(wrap_pyfunction!(probe, m)?)?;
    m.add_function(wrap_pyfunction!(process, m)?)?;
    m.add_function(wrap_pyfunction!(render_raw, m)?)?;
    m.add_function(wrap_pyfunction!(palette_from_pixels, m)?)?;
    m.add_function(wrap_pyfunction!(palette_thumbnail, m)?)?;
    m.add_function(wrap_pyfunction!(attention_window, m)?)?;
    Ok(())
}
