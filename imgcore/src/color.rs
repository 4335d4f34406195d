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
