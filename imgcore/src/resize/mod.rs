//! Lanczos3 resampling, alpha-aware like Pillow (resampled premultiplied, returned straight).
//! RGB goes through our AVX-512 kernels where the CPU has them (`avx512`), everything else
//! through fast_image_resize; both give the same bytes.

use std::f64::consts::PI;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{Filter, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::error::{ImgError, Result};
use crate::image::Pixels;
use crate::rendition::Crop;

#[cfg(target_arch = "x86_64")]
mod avx512;
pub(crate) mod weights;

/// Lanczos3's half-width in source samples (at scale 1).
pub(crate) const SUPPORT: f64 = 3.0;

fn pixel_type(channels: usize) -> Result<PixelType> {
    match channels {
        3 => Ok(PixelType::U8x3),
        4 => Ok(PixelType::U8x4),
        n => Err(ImgError::Internal(format!(
            "cannot resize {n}-channel pixels"
        ))),
    }
}

/// Lanczos3, sinc(x) * sinc(x / 3), with one sine instead of two: for t = pi * x / 3,
/// sin(pi * x) = sin(3t) = 3 sin t - 4 sin^3 t. The resizer evaluates the kernel for every tap
/// of every output row and column, and glibc's `sin` was 15 % of the resize time of a 2 MP
/// photo's renditions.
pub(crate) fn lanczos3(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    if !(-3.0..3.0).contains(&x) {
        return 0.0;
    }
    let t = PI * x / 3.0;
    let s = t.sin();
    (3.0 * s - 4.0 * s * s * s) * s / (3.0 * t * t)
}

fn lanczos3_filter() -> Result<FilterType> {
    let filter = Filter::new("Lanczos3", lanczos3, SUPPORT)
        .map_err(|e| ImgError::Internal(format!("resize filter: {e}")))?;
    Ok(FilterType::Custom(filter))
}

/// Whether resampling `crop` of `src` to `width` x `height` would return `src` unchanged.
pub fn is_identity(src: &Pixels, crop: Crop, width: u32, height: u32) -> bool {
    crop == Crop::full(src.width, src.height) && (width, height) == (src.width, src.height)
}

/// Whether `crop` is a non-empty region inside a `width` x `height` image: what
/// fast_image_resize accepts, and what the weights and the kernels read within.
pub fn crop_inside(crop: Crop, width: u32, height: u32) -> bool {
    // Written so that NaN fails every comparison.
    let axis = |start: f64, len: f64, size: u32| {
        start >= 0.0 && len > 0.0 && start + len <= f64::from(size)
    };
    axis(crop.left, crop.width, width) && axis(crop.top, crop.height, height)
}

/// Resamples `crop` of `src` to `width` x `height`; an error for pixels that do not fill
/// their buffer, a crop outside the image or an empty target.
pub fn resize(
    resizer: &mut Resizer,
    src: &Pixels,
    crop: Crop,
    width: u32,
    height: u32,
) -> Result<Pixels> {
    src.check()?;
    if !crop_inside(crop, src.width, src.height) {
        return Err(ImgError::InvalidArgument(format!(
            "crop {crop:?} is not inside the {}x{} image",
            src.width, src.height
        )));
    }
    if width == 0 || height == 0 {
        return Err(ImgError::InvalidArgument(format!(
            "cannot resize to {width}x{height}"
        )));
    }
    crate::limits::buffer_len(width, height, src.channels)?;
    if is_identity(src, crop, width, height) {
        return Ok(src.clone());
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(out) = avx512::resize(src, crop, width, height, lanczos3, SUPPORT) {
        return Ok(out);
    }
    resize_with(resizer, src, crop, width, height)
}

/// `resize` by the AVX-512 kernels alone; None where they do not apply.
#[cfg(test)]
pub(crate) fn resize_simd(src: &Pixels, crop: Crop, width: u32, height: u32) -> Option<Pixels> {
    #[cfg(target_arch = "x86_64")]
    return avx512::resize(src, crop, width, height, lanczos3, SUPPORT);
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// `resize` by fast_image_resize alone.
pub(crate) fn resize_with(
    resizer: &mut Resizer,
    src: &Pixels,
    crop: Crop,
    width: u32,
    height: u32,
) -> Result<Pixels> {
    let whole = crop == Crop::full(src.width, src.height);
    let kind = pixel_type(src.channels)?;
    let internal = |e: &dyn std::fmt::Display| ImgError::Internal(format!("resize failed: {e}"));
    let src_img =
        ImageRef::new(src.width, src.height, &src.data, kind).map_err(|e| internal(&e))?;
    let mut dst = Image::new(width, height, kind);
    let mut opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(lanczos3_filter()?));
    if !whole {
        opts = opts.crop(crop.left, crop.top, crop.width, crop.height);
    }
    resizer
        .resize(&src_img, &mut dst, &opts)
        .map_err(|e| internal(&e))?;
    Ok(Pixels {
        width,
        height,
        channels: src.channels,
        data: dst.into_vec(),
    })
}

/// Scales a crop of the full source onto an intermediate rendition of the full source.
pub fn crop_on(crop: Crop, src_w: u32, src_h: u32, mid_w: u32, mid_h: u32) -> Crop {
    let (left, width) = scale_axis(crop.left, crop.width, src_w, mid_w);
    let (top, height) = scale_axis(crop.top, crop.height, src_h, mid_h);
    Crop {
        left,
        top,
        width,
        height,
    }
}

/// `[start, start + len)` of an axis of `from` samples, on the same axis at `to` samples.
/// A crop reaching the source's edge can land past the intermediate's by rounding ((320 / 525)
/// * 525 > 320), which the resizer refuses; such a length is shortened to end at the edge.
fn scale_axis(start: f64, len: f64, from: u32, to: u32) -> (f64, f64) {
    let s = f64::from(to) / f64::from(from);
    let (start, mut len) = (start * s, len * s);
    let end = f64::from(to);
    if start + len > end {
        len = end - start;
        while start + len > end {
            len = len.next_down();
        }
    }
    (start, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_sines(x: f64) -> f64 {
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                (PI * x).sin() / (PI * x)
            }
        };
        if (-3.0..3.0).contains(&x) {
            sinc(x) * sinc(x / 3.0)
        } else {
            0.0
        }
    }

    #[test]
    fn one_sine_lanczos3_equals_the_textbook_formula() {
        for i in -40_000..=40_000 {
            let x = f64::from(i) / 10_000.0;
            assert!((lanczos3(x) - two_sines(x)).abs() < 1e-12, "x = {x}");
        }
    }

    #[test]
    fn resampling_matches_the_resizers_own_lanczos3() {
        let (w, h) = (97u32, 61u32);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let src = Pixels {
            width: w,
            height: h,
            channels: 3,
            data,
        };
        let img = ImageRef::new(w, h, &src.data, PixelType::U8x3).unwrap();
        for (tw, th) in [(50, 31), (96, 60), (13, 9)] {
            let ours = resize(&mut Resizer::new(), &src, Crop::full(w, h), tw, th).unwrap();
            let mut theirs = Image::new(tw, th, PixelType::U8x3);
            let opts =
                ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
            Resizer::new().resize(&img, &mut theirs, &opts).unwrap();
            assert_eq!(ours.data, theirs.into_vec(), "{tw}x{th}");
        }
    }

    #[test]
    fn crops_scaled_onto_an_intermediate_stay_inside_it() {
        for src in 2..3000u32 {
            for mid in [320, 640, 1280, src / 2, src - 1, src * 2 / 3] {
                if mid == 0 || mid >= src {
                    continue;
                }
                // Full-width and right-aligned crops, the ones whose edge is the source's.
                let (h, f) = (src / 2, f64::from(src));
                for crop in [
                    Crop::full(src, h),
                    Crop {
                        left: f / 3.0,
                        top: 0.0,
                        width: f - f / 3.0,
                        height: 1.0,
                    },
                ] {
                    let on = crop_on(crop, src, h, mid, h);
                    assert!(crop_inside(on, mid, h), "{src} -> {mid}: {on:?}");
                    let want = crop.width * f64::from(mid) / f;
                    assert!((on.width - want).abs() < 1e-9, "{src} -> {mid}: {on:?}");
                }
            }
        }
    }

    #[test]
    fn flat_colour_stays_flat_and_identity_is_a_copy() {
        let src = Pixels {
            width: 40,
            height: 30,
            channels: 3,
            data: [10u8, 200, 30].repeat(1200),
        };
        let mut r = Resizer::new();
        let out = resize(&mut r, &src, Crop::full(40, 30), 20, 15).unwrap();
        assert!(out.data.chunks_exact(3).all(|p| p == [10, 200, 30]));
        assert_eq!(
            resize(&mut r, &src, Crop::full(40, 30), 40, 30).unwrap(),
            src
        );
    }

    #[test]
    fn transparent_pixels_do_not_bleed_colour() {
        // Left half opaque red, right half fully transparent green: premultiplied resampling
        // keeps the visible edge red.
        let data: Vec<u8> = (0..16 * 4)
            .flat_map(|i| {
                if i % 16 < 8 {
                    [255, 0, 0, 255]
                } else {
                    [0, 255, 0, 0]
                }
            })
            .collect();
        let src = Pixels {
            width: 16,
            height: 4,
            channels: 4,
            data,
        };
        let out = resize(&mut Resizer::new(), &src, Crop::full(16, 4), 8, 2).unwrap();
        for p in out.data.chunks_exact(4).filter(|p| p[3] > 64) {
            assert!(p[1] < 8, "{p:?}");
        }
    }
}
