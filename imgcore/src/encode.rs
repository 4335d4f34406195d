//! Encoders: progressive JPEG (our own, `jpeg`) and lossy WebP (libwebp).
//! Both write sRGB pixels with no metadata.

mod jpeg;
mod trellis;

use libwebp_sys as webp;

use crate::error::{ImgError, Result};
use crate::image::Pixels;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFormat {
    Jpeg,
    WebP,
}

impl OutFormat {
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "jpeg" | "jpg" => Ok(Self::Jpeg),
            "webp" => Ok(Self::WebP),
            other => Err(ImgError::InvalidArgument(format!(
                "unknown output format {other:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::WebP => "webp",
        }
    }
}

/// Composites straight RGBA over white, as JPEG has no alpha.
pub fn flatten_on_white(rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for p in rgba.chunks_exact(4) {
        let a = u32::from(p[3]);
        for &c in &p[..3] {
            out.push(((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8);
        }
    }
    out
}

fn dims_u16(p: &Pixels) -> Result<(u16, u16)> {
    match (u16::try_from(p.width), u16::try_from(p.height)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(ImgError::Internal(format!(
            "{}x{} is too large for JPEG",
            p.width, p.height
        ))),
    }
}

/// How hard the JPEG encoder works to make the file small. Measured on the corpus renditions
/// (9 photos at 320/640/1280) against Pillow q82 at equal PSNR / equal luma SSIM, with the
/// capped tables: `Fast` -15.6 % / -10.5 % bytes for about 1.1x the CPU time of the encoder
/// before (Annex K tables, 10-scan script); `Trellis` about 1.6x. (With uncapped flat tables,
/// before the cap: `Fast` -20.6 % / -14.0 %, `Trellis` -19.3 % / -18.3 %.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JpegEffort {
    /// Rounding, with lone +-1 coefficients dropped by rate-distortion.
    #[default]
    Fast,
    /// Trellis quantisation (`trellis`), with activity masking, tuned on the uncapped tables:
    /// there, a little worse than `Fast` at equal PSNR, 5 % better at equal SSIM; over the
    /// 1.5x time budget of the default.
    Trellis,
}

pub fn jpeg(p: &Pixels, quality: u8) -> Result<Vec<u8>> {
    jpeg_with(p, quality, JpegEffort::default())
}

pub fn jpeg_with(p: &Pixels, quality: u8, effort: JpegEffort) -> Result<Vec<u8>> {
    p.check()?;
    let (w, h) = dims_u16(p)?;
    let flat;
    let rgb = if p.channels == 4 {
        flat = flatten_on_white(&p.data);
        &flat
    } else {
        &p.data
    };
    let mode = match effort {
        JpegEffort::Fast => jpeg::Quant::Rd,
        JpegEffort::Trellis => jpeg::Quant::Trellis,
    };
    Ok(jpeg::encode(rgb, w, h, quality.clamp(1, 100), mode))
}

/// Frees libwebp's picture and output buffer whatever path leaves `webp()`.
struct WebPGuard {
    pic: webp::WebPPicture,
    writer: webp::WebPMemoryWriter,
}

impl Drop for WebPGuard {
    fn drop(&mut self) {
        // SAFETY: the picture was initialised by libwebp and the writer is an empty one (or
        // one libwebp filled) before the guard was created; freeing empty ones is a no-op.
        unsafe {
            webp::WebPPictureFree(&mut self.pic);
            webp::WebPMemoryWriterClear(&mut self.writer);
        }
    }
}

pub fn webp(p: &Pixels, quality: f32, method: i32) -> Result<Vec<u8>> {
    // libwebp reads `height` rows of `width * channels` bytes from the buffer, whatever
    // its length.
    p.check()?;
    let fail = |what: &str| ImgError::Internal(format!("WebP encoding failed: {what}"));
    let max = webp::WEBP_MAX_DIMENSION;
    if p.width > max || p.height > max {
        return Err(fail("image larger than 16383 pixels"));
    }
    let mut config = webp::WebPConfig::new_with_preset(
        webp::WebPPreset::WEBP_PRESET_DEFAULT,
        quality.clamp(0.0, 100.0),
    )
    .map_err(|()| fail("config"))?;
    config.method = method.clamp(0, 6);
    // SAFETY: the config is plain data initialised above.
    if unsafe { webp::WebPValidateConfig(&config) } == 0 {
        return Err(fail("invalid config"));
    }
    let mut g = WebPGuard {
        pic: webp::WebPPicture::new().map_err(|()| fail("picture"))?,
        writer: memory_writer(),
    };
    g.pic.width = p.width as i32;
    g.pic.height = p.height as i32;
    let stride = (p.width as usize * p.channels) as i32;
    // SAFETY: `p.data` holds exactly width*height*channels bytes of 3 or 4 channels (checked
    // above), which libwebp copies into the picture; the writer outlives the encode call.
    unsafe {
        let imported = if p.channels == 4 {
            webp::WebPPictureImportRGBA(&mut g.pic, p.data.as_ptr(), stride)
        } else {
            webp::WebPPictureImportRGB(&mut g.pic, p.data.as_ptr(), stride)
        };
        if imported == 0 {
            return Err(fail("out of memory importing pixels"));
        }
        g.pic.writer = Some(webp::WebPMemoryWrite);
        g.pic.custom_ptr = (&mut g.writer as *mut webp::WebPMemoryWriter).cast();
        if webp::WebPEncode(&config, &mut g.pic) == 0 {
            return Err(fail(&format!("error code {:?}", g.pic.error_code)));
        }
        if g.writer.mem.is_null() || g.writer.size == 0 {
            return Err(fail("libwebp wrote no output"));
        }
        // SAFETY: libwebp's memory writer holds `size` bytes at the non-null `mem`.
        Ok(std::slice::from_raw_parts(g.writer.mem, g.writer.size).to_vec())
    }
}

/// An empty memory writer: what `WebPMemoryWriterInit` makes, with its `pad` (which that
/// function leaves untouched) zeroed too.
fn memory_writer() -> webp::WebPMemoryWriter {
    webp::WebPMemoryWriter {
        mem: std::ptr::null_mut(),
        size: 0,
        max_size: 0,
        pad: [0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_on_white() {
        assert_eq!(
            flatten_on_white(&[0, 0, 0, 0, 10, 20, 30, 255, 0, 0, 0, 128]),
            vec![255, 255, 255, 10, 20, 30, 127, 127, 127]
        );
    }

    #[test]
    fn encoders_produce_their_magic() {
        let p = Pixels {
            width: 17,
            height: 9,
            channels: 4,
            data: [200u8, 30, 60, 128].repeat(17 * 9),
        };
        assert!(jpeg(&p, 82).unwrap().starts_with(&[0xFF, 0xD8, 0xFF]));
        let w = webp(&p, 80.0, 4).unwrap();
        assert_eq!((&w[..4], &w[8..12]), (&b"RIFF"[..], &b"WEBP"[..]));
    }
}
