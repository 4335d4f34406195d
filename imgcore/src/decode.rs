//! Strict decoding into 8-bit pixels in stored orientation. Truncated or corrupt data is an
//! error, never grey-filled.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat};
use libwebp_sys as webp;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::error::{ImgError, Result};
use crate::header::{Format, Header};
use crate::limits;

/// Channel layout of decoded pixels, before colour management.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Gray,
    Rgb,
    Rgba,
    /// Ink values as stored by Adobe-style JPEGs (inverted: 255 = no ink).
    CmykInverted,
}

impl Layout {
    pub fn channels(self) -> usize {
        match self {
            Self::Gray => 1,
            Self::Rgb => 3,
            Self::Rgba | Self::CmykInverted => 4,
        }
    }
}

#[derive(Debug)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub layout: Layout,
    pub data: Vec<u8>,
    pub icc: Option<Vec<u8>>,
}

pub fn decode(data: &[u8], header: &Header, max_pixels: u64) -> Result<Decoded> {
    limits::check_dimensions(header.width, header.height, max_pixels)?;
    let decoded = match header.format {
        Format::Jpeg => jpeg(data)?,
        Format::Png => with_image(data, ImageFormat::Png, header, max_pixels)?,
        Format::Gif => with_image(data, ImageFormat::Gif, header, max_pixels)?,
        Format::WebP if header.frame_count <= 1 => webp_still(data, header)?,
        Format::WebP => with_image(data, ImageFormat::WebP, header, max_pixels)?,
        Format::Tiff => with_image(data, ImageFormat::Tiff, header, max_pixels)?,
        Format::Heif | Format::Avif => {
            return Err(ImgError::InvalidArgument(format!(
                "{} pixels are decoded outside the core and passed in as `decoded`",
                header.format.name()
            )))
        }
    };
    // The decoder's own size wins, but it must still respect the limit and fill its buffer.
    limits::check_dimensions(decoded.width, decoded.height, max_pixels)?;
    let want = limits::buffer_len(decoded.width, decoded.height, decoded.layout.channels())?;
    if decoded.data.len() != want {
        return Err(ImgError::corrupt("decoder returned a short pixel buffer"));
    }
    Ok(decoded)
}

/// Pixels a library outside the core decoded (HEIF through libheif, AVIF through libavif):
/// 8-bit RGB or RGBA rows of `stride` bytes.
#[derive(Debug)]
pub struct External {
    pub width: u32,
    pub height: u32,
    pub channels: usize,
    pub stride: usize,
    pub data: Vec<u8>,
    /// The decoder applied the container's `irot`/`imir` (libheif does; libavif leaves them).
    pub oriented: bool,
}

/// Checks externally decoded pixels against the container's header and takes its colour.
/// Returns the header the rest of the pipeline sees: when the decoder already oriented the
/// pixels, their size is the displayed one and the orientation is 1, so nothing is applied
/// twice.
pub fn external(
    data: &[u8],
    header: &Header,
    px: External,
    max_pixels: u64,
) -> Result<(Header, Decoded)> {
    let info = crate::isobmff::parse(data)
        .ok_or_else(|| ImgError::corrupt("truncated or invalid HEIF/AVIF header"))?;
    let layout = match px.channels {
        3 => Layout::Rgb,
        4 => Layout::Rgba,
        n => {
            return Err(ImgError::InvalidArgument(format!(
                "decoded pixels have {n} channels; 3 or 4 expected"
            )))
        }
    };
    limits::check_dimensions(px.width, px.height, max_pixels)?;
    let (expect_w, expect_h) = if px.oriented {
        header.display_size()
    } else {
        (header.width, header.height)
    };
    // libheif crops to a clean aperture (`clap`) when there is one: never larger.
    let fits = if px.oriented {
        px.width <= expect_w && px.height <= expect_h
    } else {
        (px.width, px.height) == (expect_w, expect_h)
    };
    if !fits || px.width == 0 || px.height == 0 {
        return Err(ImgError::corrupt(format!(
            "decoded {}x{} pixels for a {}x{} image",
            px.width, px.height, expect_w, expect_h
        )));
    }
    let row = limits::buffer_len(px.width, 1, px.channels)?;
    let want = limits::buffer_len(px.width, px.height, px.channels)?;
    let rows = usize::try_from(px.height).unwrap_or(usize::MAX);
    let needed = px
        .stride
        .checked_mul(rows - 1)
        .and_then(|n| n.checked_add(row));
    if px.stride < row || needed.is_none_or(|n| px.data.len() < n) {
        return Err(ImgError::InvalidArgument(format!(
            "{} bytes of decoded pixels for {}x{}x{} with rows of {} bytes",
            px.data.len(),
            px.width,
            px.height,
            px.channels,
            px.stride
        )));
    }
    let pixels = if px.stride == row && px.data.len() == want {
        px.data
    } else {
        let mut packed = Vec::with_capacity(want);
        for r in px.data.chunks(px.stride).take(rows) {
            packed.extend_from_slice(&r[..row]);
        }
        packed
    };
    let icc = info
        .icc
        .or_else(|| info.nclx.and_then(crate::cicp::profile));
    let mut seen = header.clone();
    if px.oriented {
        seen.width = px.width;
        seen.height = px.height;
        seen.orientation = 1;
    }
    seen.has_alpha = px.channels == 4;
    Ok((
        seen,
        Decoded {
            width: px.width,
            height: px.height,
            layout,
            data: pixels,
            icc,
        },
    ))
}

fn jpeg(data: &[u8]) -> Result<Decoded> {
    // Strict mode turns zune-jpeg's "fill the rest with grey" recovery into errors.
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(data), options);
    dec.decode_headers().map_err(ImgError::corrupt)?;
    let layout = match dec.input_colorspace() {
        Some(ColorSpace::Luma) => Layout::Gray,
        Some(ColorSpace::CMYK | ColorSpace::YCCK) => Layout::CmykInverted,
        _ => Layout::Rgb,
    };
    let ycck = dec.input_colorspace() == Some(ColorSpace::YCCK);
    let out = match layout {
        Layout::Gray => ColorSpace::Luma,
        // Raw components: zune-jpeg has no YCCK -> CMYK mapping, so that step is ours.
        Layout::CmykInverted if ycck => ColorSpace::YCCK,
        Layout::CmykInverted => ColorSpace::CMYK,
        _ => ColorSpace::RGB,
    };
    dec.set_options(options.jpeg_set_out_colorspace(out));
    let mut pixels = dec.decode().map_err(ImgError::corrupt)?;
    if ycck {
        ycck_to_cmyk(&mut pixels);
    }
    let info = dec
        .info()
        .ok_or_else(|| ImgError::corrupt("JPEG without frame header"))?;
    Ok(Decoded {
        width: u32::from(info.width),
        height: u32::from(info.height),
        layout,
        data: pixels,
        icc: dec.icc_profile(),
    })
}

/// Adobe YCCK: YCbCr (JFIF equations) gives the true C, M, Y inks, while K is stored inverted;
/// the result is all inverted, like Adobe CMYK.
fn ycck_to_cmyk(px: &mut [u8]) {
    for p in px.chunks_exact_mut(4) {
        let y = f32::from(p[0]);
        let cb = f32::from(p[1]) - 128.0;
        let cr = f32::from(p[2]) - 128.0;
        // `as u8` saturates, which is the clamp wanted here.
        p[0] = 255 - (y + 1.402 * cr).round() as u8;
        p[1] = 255 - (y - 0.344_136 * cb - 0.714_136 * cr).round() as u8;
        p[2] = 255 - (y + 1.772 * cb).round() as u8;
    }
}

/// A still WebP through libwebp itself (what Pillow uses): the same pixels as the reference,
/// and several times faster than the pure-Rust decoder. The output buffer is sized from the
/// bitstream's own dimensions, which must match the header already checked against the limit.
fn webp_still(data: &[u8], header: &Header) -> Result<Decoded> {
    let mut f = webp::WebPBitstreamFeatures {
        width: 0,
        height: 0,
        has_alpha: 0,
        has_animation: 0,
        format: 0,
        pad: [0; 5],
    };
    // SAFETY: libwebp reads at most `data.len()` bytes and writes only `f`.
    let status = unsafe { webp::WebPGetFeatures(data.as_ptr(), data.len(), &mut f) };
    if status != webp::VP8StatusCode::VP8_STATUS_OK {
        return Err(ImgError::corrupt(format!("WebP header: {status:?}")));
    }
    let (Ok(width), Ok(height)) = (u32::try_from(f.width), u32::try_from(f.height)) else {
        return Err(ImgError::corrupt("WebP with negative dimensions"));
    };
    if (width, height) != (header.width, header.height) {
        return Err(ImgError::corrupt(
            "WebP bitstream size differs from its header",
        ));
    }
    let layout = if f.has_alpha != 0 {
        Layout::Rgba
    } else {
        Layout::Rgb
    };
    let channels = layout.channels();
    let mut px = vec![0u8; limits::buffer_len(width, height, channels)?];
    let stride = i32::try_from(width as usize * channels)
        .map_err(|_| ImgError::corrupt("WebP row too long"))?;
    // SAFETY: `px` holds `height` rows of `stride` bytes, the size libwebp checks the output
    // against; it writes nothing beyond `px.len()` and returns null on any decoding error.
    let written = unsafe {
        if layout == Layout::Rgba {
            webp::WebPDecodeRGBAInto(data.as_ptr(), data.len(), px.as_mut_ptr(), px.len(), stride)
        } else {
            webp::WebPDecodeRGBInto(data.as_ptr(), data.len(), px.as_mut_ptr(), px.len(), stride)
        }
    };
    if written.is_null() {
        return Err(ImgError::corrupt("WebP data is truncated or corrupt"));
    }
    Ok(Decoded {
        width,
        height,
        layout,
        data: px,
        icc: crate::header::webp_icc(data),
    })
}

fn image_error(err: image::ImageError) -> ImgError {
    match err {
        image::ImageError::Limits(e) => ImgError::TooLarge(format!("image too large: {e}")),
        image::ImageError::Unsupported(e) => {
            ImgError::UnsupportedFormat(format!("unsupported format: {e}"))
        }
        other => ImgError::corrupt(other),
    }
}

fn with_image(
    data: &[u8],
    format: ImageFormat,
    header: &Header,
    max_pixels: u64,
) -> Result<Decoded> {
    let mut lim = image::Limits::default();
    lim.max_alloc = Some(limits::max_alloc_bytes(max_pixels));
    let mut reader = image::ImageReader::with_format(Cursor::new(data), format);
    reader.limits(lim);
    let mut dec = reader.into_decoder().map_err(image_error)?;
    let icc = dec.icc_profile().ok().flatten();
    let img = DynamicImage::from_decoder(dec).map_err(image_error)?;
    let (width, height) = (img.width(), img.height());
    // Alpha follows the header (e.g. a GIF decodes to RGBA even without transparency).
    let (layout, data) = if header.has_alpha && img.color().has_alpha() {
        (Layout::Rgba, img.into_rgba8().into_raw())
    } else {
        (Layout::Rgb, img.into_rgb8().into_raw())
    };
    Ok(Decoded {
        width,
        height,
        layout,
        data,
        icc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ycck_grey_maps_to_equal_inks() {
        let mut px = vec![200, 128, 128, 17, 0, 128, 128, 255];
        ycck_to_cmyk(&mut px);
        assert_eq!(px, vec![55, 55, 55, 17, 255, 255, 255, 255]);
    }

    fn header_of(data: &[u8]) -> Header {
        crate::header::parse(data).unwrap()
    }

    #[test]
    fn truncated_files_are_corrupt_not_grey() {
        // A real 64x48 JPEG and PNG made by our own encoders, cut in the middle of the data.
        let px = crate::image::Pixels {
            width: 64,
            height: 48,
            channels: 3,
            data: (0..64 * 48 * 3).map(|i| (i * 7 % 251) as u8).collect(),
        };
        let jpg = crate::encode::jpeg(&px, 90).unwrap();
        assert!(decode(&jpg, &header_of(&jpg), 1 << 20).is_ok());
        let cut = &jpg[..jpg.len() * 2 / 3];
        let err = decode(cut, &header_of(cut), 1 << 20).unwrap_err();
        assert_eq!(err.code(), "corrupt_image");

        let mut png = Vec::new();
        image::RgbImage::from_raw(64, 48, px.data.clone())
            .unwrap()
            .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        assert!(decode(&png, &header_of(&png), 1 << 20).is_ok());
        let cut = &png[..png.len() / 2];
        assert_eq!(
            decode(cut, &header_of(cut), 1 << 20).unwrap_err().code(),
            "corrupt_image"
        );

        for channels in [3, 4] {
            let src = crate::image::Pixels {
                channels,
                data: (0..64 * 48 * channels)
                    .map(|i| (i * 5 % 253) as u8)
                    .collect(),
                ..px.clone()
            };
            let webp = crate::encode::webp(&src, 80.0, 4).unwrap();
            let d = decode(&webp, &header_of(&webp), 1 << 20).unwrap();
            assert_eq!((d.width, d.height, d.layout.channels()), (64, 48, channels));
            let cut = &webp[..webp.len() * 2 / 3];
            assert_eq!(
                decode(cut, &header_of(cut), 1 << 20).unwrap_err().code(),
                "corrupt_image"
            );
        }
    }
}
