//! Colour management: embedded ICC profiles (CMYK, Display P3, grey) to sRGB with lcms2,
//! perceptual intent as Pillow's ImageCms defaults to.

use lcms2::{
    ColorSpaceSignature, Flags, InfoType, Intent, Locale, PixelFormat, Profile, Transform,
};

use crate::decode::{Decoded, Layout};
use crate::error::Result;
use crate::image::Pixels;

/// Converts decoded pixels to sRGB RGB or RGBA (straight alpha). `threads` splits the
/// per-pixel transform into row bands.
pub fn to_srgb(d: Decoded, threads: usize) -> Result<Pixels> {
    let profile = d.icc.as_deref().and_then(|icc| Profile::new_icc(icc).ok());
    let (w, h) = (d.width, d.height);
    match d.layout {
        Layout::Rgb | Layout::Rgba => {
            let channels = d.layout.channels();
            let mut data = d.data;
            let fmt = if channels == 4 {
                PixelFormat::RGBA_8
            } else {
                PixelFormat::RGB_8
            };
            let t = profile
                .filter(|p| p.color_space() == ColorSpaceSignature::RgbData && !is_srgb(p))
                .and_then(|p| transform(&p, fmt, fmt));
            if let Some(t) = t {
                in_bands(&mut data, channels, threads, |chunk| {
                    t.transform_in_place(chunk)
                });
            }
            Ok(Pixels {
                width: w,
                height: h,
                channels,
                data,
            })
        }
        Layout::Gray => {
            let mut rgb = vec![0u8; d.data.len() * 3];
            let t = profile
                .filter(|p| p.color_space() == ColorSpaceSignature::GrayData)
                .and_then(|p| transform(&p, PixelFormat::GRAY_8, PixelFormat::RGB_8));
            match t {
                Some(t) => t.transform_pixels(&d.data, &mut rgb),
                None => {
                    for (dst, &g) in rgb.chunks_exact_mut(3).zip(&d.data) {
                        dst.fill(g);
                    }
                }
            }
            Ok(Pixels {
                width: w,
                height: h,
                channels: 3,
                data: rgb,
            })
        }
        Layout::CmykInverted => {
            let mut rgb = vec![0u8; d.data.len() / 4 * 3];
            // Adobe CMYK JPEGs store inverted ink; lcms2 reads it with the REV format.
            let t = profile
                .filter(|p| p.color_space() == ColorSpaceSignature::CmykData)
                .and_then(|p| transform(&p, PixelFormat::CMYK_8_REV, PixelFormat::RGB_8));
            match t {
                Some(t) => t.transform_pixels(&d.data, &mut rgb),
                None => {
                    // Pillow's naive conversion: R = (255 - C) * (255 - K) / 255 on true ink.
                    for (dst, src) in rgb.chunks_exact_mut(3).zip(d.data.chunks_exact(4)) {
                        let k = u32::from(src[3]);
                        for (o, &c) in dst.iter_mut().zip(&src[..3]) {
                            *o = ((u32::from(c) * k + 127) / 255) as u8;
                        }
                    }
                }
            }
            Ok(Pixels {
                width: w,
                height: h,
                channels: 3,
                data: rgb,
            })
        }
    }
}

/// `None` when lcms2 cannot build a transform from the embedded profile: a damaged profile is
/// ignored (the pixels are used as they are), as browsers do, rather than failing the image.
fn transform(
    p: &Profile,
    from: PixelFormat,
    to: PixelFormat,
) -> Option<Transform<u8, u8, lcms2::GlobalContext, lcms2::DisallowCache>> {
    let srgb = Profile::new_srgb();
    Transform::new_flags_context(
        lcms2::GlobalContext::new(),
        p,
        from,
        &srgb,
        to,
        Intent::Perceptual,
        Flags::NO_CACHE,
    )
    .ok()
}

/// sRGB-tagged profiles (camera and OS variants) are treated as sRGB: converting them would
/// cost a full pass for changes below one code value.
fn is_srgb(p: &Profile) -> bool {
    let desc = p
        .info(InfoType::Description, Locale::none())
        .unwrap_or_default();
    desc.contains("sRGB") || desc.contains("IEC 61966-2.1") || desc.contains("IEC61966-2.1")
}

/// Runs `f` on whole-pixel bands of `data`, on up to `threads` threads.
fn in_bands(data: &mut [u8], channels: usize, threads: usize, f: impl Fn(&mut [u8]) + Sync) {
    let pixels = data.len() / channels;
    let threads = threads.clamp(1, 16);
    if threads == 1 || pixels < 1 << 16 {
        f(data);
        return;
    }
    let band = pixels.div_ceil(threads) * channels;
    std::thread::scope(|s| {
        for chunk in data.chunks_mut(band) {
            let f = &f;
            s.spawn(move || f(chunk));
        }
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lcms2::{CIExyY, CIExyYTRIPLE, ToneCurve};

    /// Display P3: P3 primaries, D65, the sRGB transfer curve.
    pub(crate) fn display_p3_icc() -> Vec<u8> {
        let xy = |x, y| CIExyY { x, y, Y: 1.0 };
        let primaries = CIExyYTRIPLE {
            Red: xy(0.680, 0.320),
            Green: xy(0.265, 0.690),
            Blue: xy(0.150, 0.060),
        };
        let srgb_curve =
            ToneCurve::new_parametric(4, &[2.4, 1.0 / 1.055, 0.055 / 1.055, 1.0 / 12.92, 0.04045])
                .unwrap();
        let curves = [&srgb_curve, &srgb_curve, &srgb_curve];
        let p = Profile::new_rgb(&xy(0.3127, 0.3290), &primaries, &curves).unwrap();
        p.icc().unwrap()
    }

    fn convert(layout: Layout, data: Vec<u8>, icc: Option<Vec<u8>>) -> Vec<u8> {
        let n = (data.len() / layout.channels()) as u32;
        to_srgb(
            Decoded {
                width: n,
                height: 1,
                layout,
                data,
                icc,
            },
            2,
        )
        .unwrap()
        .data
    }

    #[test]
    fn display_p3_is_converted_and_grey_stays_grey() {
        let out = convert(
            Layout::Rgb,
            vec![128, 128, 128, 40, 180, 60],
            Some(display_p3_icc()),
        );
        assert!(out[..3].iter().all(|&v| v.abs_diff(128) <= 1), "{out:?}");
        // A P3 green is more saturated than sRGB can show: red drops, green rises.
        assert!(out[3] < 40 && out[4] > 180, "{out:?}");
    }

    #[test]
    fn alpha_survives_the_transform_and_bad_profiles_are_ignored() {
        let out = convert(Layout::Rgba, vec![40, 180, 60, 77], Some(display_p3_icc()));
        assert_eq!(out[3], 77);
        let out = convert(Layout::Rgb, vec![1, 2, 3], Some(b"not a profile".to_vec()));
        assert_eq!(out, vec![1, 2, 3]);
    }

    #[test]
    fn cmyk_without_profile_is_naive_and_not_inverted() {
        // Inverted storage: 255 = no ink -> white; 0 everywhere = full ink -> black.
        let out = convert(
            Layout::CmykInverted,
            vec![255, 255, 255, 255, 0, 0, 0, 0],
            None,
        );
        assert_eq!(out, vec![255, 255, 255, 0, 0, 0]);
    }
}
