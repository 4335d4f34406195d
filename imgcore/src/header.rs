//! Format sniffing and header-only parsing: dimensions, orientation, alpha, frames, ICC.
//! Nothing here allocates in proportion to the image's declared size.

use crate::error::{ImgError, Result};
use crate::exif;
use crate::isobmff;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    WebP,
    Tiff,
    /// HEIC/HEIF (HEVC-coded items).
    Heif,
    Avif,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::WebP => "webp",
            Self::Tiff => "tiff",
            Self::Heif => "heif",
            Self::Avif => "avif",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub orientation: u8,
    pub has_alpha: bool,
    pub frame_count: u32,
    pub has_icc: bool,
    /// Pixels the decoder allocates: `width * height`, or more when the shown image is a crop
    /// of a larger coded one (a HEIF clean aperture). The pixel limit applies to this.
    pub coded_pixels: u64,
}

impl Header {
    /// A still, opaque, unrotated image without a profile: what each format's walk refines.
    fn new(format: Format, width: u32, height: u32) -> Self {
        Self {
            format,
            width,
            height,
            orientation: 1,
            has_alpha: false,
            frame_count: 1,
            has_icc: false,
            coded_pixels: u64::from(width) * u64::from(height),
        }
    }

    /// Dimensions after EXIF orientation (5..8 swap the axes).
    pub fn display_size(&self) -> (u32, u32) {
        if self.orientation >= 5 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// Identifies the container from its magic bytes, never from a name.
pub fn sniff(data: &[u8]) -> Result<Format> {
    let unsupported = |what: &str| {
        Err(ImgError::UnsupportedFormat(format!(
            "unsupported format: {what}"
        )))
    };
    match data {
        [] => unsupported("empty file"),
        [0xFF, 0xD8, 0xFF, ..] => Ok(Format::Jpeg),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Ok(Format::Png),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Ok(Format::Gif),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Ok(Format::WebP),
        [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => Ok(Format::Tiff),
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => match isobmff::brand(data) {
            Some(true) => Ok(Format::Avif),
            Some(false) => Ok(Format::Heif),
            None => unsupported("ISO media file that is not a HEIF or AVIF image"),
        },
        _ if looks_like_svg(data) => unsupported("SVG"),
        _ => unsupported("not a JPEG, PNG, GIF, WebP, TIFF, HEIF or AVIF image"),
    }
}

fn looks_like_svg(data: &[u8]) -> bool {
    let head = &data[..data.len().min(1024)];
    head.windows(4).any(|w| w.eq_ignore_ascii_case(b"<svg"))
}

/// Parses the header of any supported format.
pub fn parse(data: &[u8]) -> Result<Header> {
    let format = sniff(data)?;
    let truncated = || ImgError::corrupt(format!("truncated or invalid {} header", format.name()));
    let header = match format {
        Format::Jpeg => jpeg(data),
        Format::Png => png(data),
        Format::Gif => gif(data),
        Format::WebP => webp(data),
        Format::Tiff => tiff(data),
        Format::Heif | Format::Avif => heif(data, format),
    }
    .ok_or_else(truncated)?;
    if header.width == 0 || header.height == 0 {
        return Err(truncated());
    }
    Ok(header)
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        d.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        d.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn le16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn le24(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(3)?)?;
    Some(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
}
fn le32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn jpeg(d: &[u8]) -> Option<Header> {
    let mut h = Header::new(Format::Jpeg, 0, 0);
    let mut at = 2usize;
    loop {
        if *d.get(at)? != 0xFF {
            return None;
        }
        while *d.get(at)? == 0xFF {
            at += 1;
        }
        let marker = *d.get(at)?;
        at += 1;
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            continue; // standalone markers carry no length
        }
        let len = usize::from(be16(d, at)?);
        let seg = d.get(at.checked_add(2)?..at.checked_add(len)?)?;
        match marker {
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                h.height = u32::from(be16(seg, 1)?);
                h.width = u32::from(be16(seg, 3)?);
                // SOF is after EXIF/ICC in every real file; the scan data follows.
                return Some(h);
            }
            0xE1 if seg.starts_with(b"Exif\0\0") && h.orientation == 1 => {
                h.orientation = exif::orientation(seg);
            }
            0xE2 if seg.starts_with(b"ICC_PROFILE\0") => h.has_icc = true,
            0xDA | 0xD9 => return None,
            _ => {}
        }
        at = at.checked_add(len)?;
    }
}

/// HEIF and AVIF: the primary item's coded size, with `irot`/`imir` as the orientation (any
/// EXIF orientation inside is informational and never read).
fn heif(d: &[u8], format: Format) -> Option<Header> {
    let info = isobmff::parse(d)?;
    // libheif crops to the clean aperture; libavif (through Pillow) does not.
    let (w, h) = match info.clean {
        Some(clean) if format == Format::Heif => clean,
        _ => (info.width, info.height),
    };
    Some(Header {
        orientation: info.orientation,
        has_alpha: info.has_alpha,
        frame_count: info.frame_count,
        has_icc: info.icc.is_some(),
        coded_pixels: u64::from(info.width) * u64::from(info.height),
        ..Header::new(format, w, h)
    })
}

fn png(d: &[u8]) -> Option<Header> {
    if d.get(12..16)? != b"IHDR" {
        return None;
    }
    let color_type = *d.get(25)?;
    let mut h = Header {
        has_alpha: matches!(color_type, 4 | 6),
        ..Header::new(Format::Png, be32(d, 16)?, be32(d, 20)?)
    };
    let mut at = 8usize;
    while let (Some(len), Some(kind)) = (be32(d, at), d.get(at + 4..at + 8)) {
        let len = usize::try_from(len).ok()?;
        let body = at + 8;
        match kind {
            b"iCCP" => h.has_icc = true,
            b"tRNS" => h.has_alpha = true,
            b"eXIf" => {
                h.orientation = d
                    .get(body..body.checked_add(len)?)
                    .map_or(1, exif::orientation)
            }
            b"acTL" => h.frame_count = be32(d, body)?.max(1),
            b"IEND" => break,
            _ => {}
        }
        // Clamped so that the next header read fails cleanly instead of overflowing.
        at = body.checked_add(len)?.checked_add(4)?.min(d.len());
    }
    Some(h)
}

fn gif(d: &[u8]) -> Option<Header> {
    // Frames are counted as the blocks are walked.
    let mut h = Header {
        frame_count: 0,
        ..Header::new(Format::Gif, u32::from(le16(d, 6)?), u32::from(le16(d, 8)?))
    };
    let flags = *d.get(10)?;
    let mut at = 13usize;
    if flags & 0x80 != 0 {
        at += 3 << ((flags & 7) + 1);
    }
    // Walk the blocks to count frames; a truncated tail just ends the count here and is
    // reported by the decoder, which needs only the first frame.
    let skip_sub_blocks = |mut at: usize| -> Option<usize> {
        loop {
            let n = usize::from(*d.get(at)?);
            at += 1 + n;
            if n == 0 {
                return Some(at);
            }
        }
    };
    while let Some(&block) = d.get(at) {
        match block {
            0x21 => {
                let label = *d.get(at + 1)?;
                if label == 0xF9 && h.frame_count == 0 && *d.get(at + 3)? & 1 != 0 {
                    h.has_alpha = true;
                }
                let Some(next) = skip_sub_blocks(at + 2) else {
                    break;
                };
                at = next;
            }
            0x2C => {
                h.frame_count += 1;
                if h.frame_count == 1 {
                    // Like Pillow, a first frame reaching past the logical screen grows the
                    // canvas: a 44-byte bomb declares its size here, not in the screen.
                    let (left, top) = (u32::from(le16(d, at + 1)?), u32::from(le16(d, at + 3)?));
                    let (w, hgt) = (u32::from(le16(d, at + 5)?), u32::from(le16(d, at + 7)?));
                    h.width = h.width.max(left + w);
                    h.height = h.height.max(top + hgt);
                }
                let Some(&packed) = d.get(at + 9) else { break };
                at += 10;
                if packed & 0x80 != 0 {
                    at += 3 << ((packed & 7) + 1);
                }
                let Some(next) = skip_sub_blocks(at + 1) else {
                    break;
                };
                at = next;
            }
            _ => break,
        }
    }
    h.frame_count = h.frame_count.max(1);
    Some(h)
}

fn webp(d: &[u8]) -> Option<Header> {
    let mut h = Header::new(Format::WebP, 0, 0);
    let mut frames = 0u32;
    let mut chunks = webp_chunks(d);
    for (kind, chunk) in chunks.by_ref() {
        match kind {
            b"VP8X" => {
                let flags = *chunk.first()?;
                h.has_alpha = flags & 0x10 != 0;
                h.has_icc = flags & 0x20 != 0;
                h.width = le24(chunk, 4)? + 1;
                h.height = le24(chunk, 7)? + 1;
            }
            b"VP8 " if h.width == 0 => {
                if chunk.get(3..6)? != [0x9D, 0x01, 0x2A] {
                    return None;
                }
                h.width = u32::from(le16(chunk, 6)? & 0x3FFF);
                h.height = u32::from(le16(chunk, 8)? & 0x3FFF);
            }
            b"VP8L" if h.width == 0 => {
                if *chunk.first()? != 0x2F {
                    return None;
                }
                let bits = le32(chunk, 1)?;
                h.width = (bits & 0x3FFF) + 1;
                h.height = ((bits >> 14) & 0x3FFF) + 1;
                h.has_alpha = bits >> 28 & 1 != 0;
            }
            b"ICCP" => h.has_icc = true,
            b"EXIF" => h.orientation = exif::orientation(chunk),
            b"ANMF" => frames += 1,
            _ => {}
        }
    }
    if chunks.broken {
        return None;
    }
    h.frame_count = frames.max(1);
    Some(h)
}

/// The chunks of a RIFF WebP file as (FourCC, body); a body cut short by the end of the data
/// is yielded as far as it goes. `broken` tells that the walk stopped at a malformed chunk.
pub struct WebPChunks<'a> {
    d: &'a [u8],
    at: usize,
    pub broken: bool,
}

pub fn webp_chunks(d: &[u8]) -> WebPChunks<'_> {
    WebPChunks {
        d,
        at: 12,
        broken: false,
    }
}

impl<'a> Iterator for WebPChunks<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let d = self.d;
        let kind = d.get(self.at..self.at.checked_add(4)?)?;
        let len = usize::try_from(le32(d, self.at + 4)?).ok();
        let body = self.at + 8;
        let span = len.and_then(|len| {
            let end = body.checked_add(len)?;
            Some((end.min(d.len()), end.checked_add(len & 1)?.min(d.len())))
        });
        match span.and_then(|(end, next)| Some((d.get(body..end)?, next))) {
            Some((chunk, next)) => {
                self.at = next;
                Some((kind, chunk))
            }
            None => {
                self.broken = true;
                None
            }
        }
    }
}

/// The embedded ICC profile of a WebP file, if any.
pub fn webp_icc(d: &[u8]) -> Option<Vec<u8>> {
    webp_chunks(d)
        .find(|(kind, _)| *kind == b"ICCP")
        .map(|(_, body)| body.to_vec())
}

fn tiff(d: &[u8]) -> Option<Header> {
    let t = exif::Tiff::new(d)?;
    let mut h = Header::new(Format::Tiff, 0, 0);
    for e in t.ifd0() {
        match e.tag {
            256 => h.width = t.scalar(&e)?,
            257 => h.height = t.scalar(&e)?,
            274 => {
                h.orientation = t
                    .scalar(&e)
                    .filter(|v| (1..=8).contains(v))
                    .map_or(1, |v| v as u8)
            }
            338 => h.has_alpha = matches!(t.scalar(&e), Some(1 | 2)),
            34675 => h.has_icc = true,
            _ => {}
        }
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_magic() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0xx").ok(), Some(Format::Jpeg));
        assert_eq!(sniff(b"GIF89a....").ok(), Some(Format::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").ok(), Some(Format::WebP));
        assert_eq!(sniff(b"MM\0*\0\0\0\x08").ok(), Some(Format::Tiff));
        for bad in [
            &b""[..],
            b"# README\n",
            b"\0\0\0\x1cftypavif",
            b"\0\0\0\x18ftypheic",
            b"<?xml?><svg>",
        ] {
            assert!(
                matches!(sniff(bad), Err(ImgError::UnsupportedFormat(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn gif_bomb_header_is_read_without_decoding() {
        // Pillow's 44-byte bomb: a 32x32 screen whose first frame sits at top 65280 and
        // is 65535x1321 pixels.
        let mut g = b"GIF89a\x20\0\x20\0\0\0\0".to_vec();
        g.extend_from_slice(&[0x2C, 0, 0, 0x00, 0xFF, 0xFF, 0xFF, 0x29, 0x05, 0, 8, 0]);
        let h = parse(&g).unwrap();
        assert_eq!((h.width, h.height), (65535, 66601));
    }

    #[test]
    fn png_header_and_bomb_dimensions() {
        let mut p = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        p.extend_from_slice(&65536u32.to_be_bytes());
        p.extend_from_slice(&65536u32.to_be_bytes());
        p.extend_from_slice(&[1, 3, 0, 0, 0, 0, 0, 0, 0]);
        let h = parse(&p).unwrap();
        assert_eq!((h.width, h.height, h.has_alpha), (65536, 65536, false));
        let err = crate::limits::check_dimensions(h.width, h.height, 100_000_000).unwrap_err();
        assert_eq!(err.code(), "image_too_large");
    }

    #[test]
    fn jpeg_header_with_exif() {
        let exif = crate::exif::exif_with_orientation(6, false);
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE1];
        j.extend_from_slice(&(exif.len() as u16 + 2).to_be_bytes());
        j.extend_from_slice(&exif);
        j.extend_from_slice(&[0xFF, 0xC0, 0, 11, 8, 0, 20, 0, 30, 1, 1, 0x11, 0]);
        let h = parse(&j).unwrap();
        assert_eq!((h.width, h.height, h.orientation), (30, 20, 6));
        assert_eq!(h.display_size(), (20, 30));
        assert!(parse(&j[..j.len() - 8]).is_err());
    }

    #[test]
    fn webp_icc_profile_is_found_between_chunks() {
        let mut webp = b"RIFF\0\0\0\0WEBP".to_vec();
        // An odd-sized chunk is padded to even length before the next one.
        webp.extend_from_slice(b"VP8X\x0a\0\0\0\x20\0\0\0\x01\0\0\x01\0\0");
        webp.extend_from_slice(b"EXIF\x03\0\0\0abc\0");
        webp.extend_from_slice(b"ICCP\x04\0\0\0icc!");
        assert_eq!(webp_icc(&webp).as_deref(), Some(&b"icc!"[..]));
        let h = parse(&webp).unwrap();
        assert_eq!((h.width, h.height, h.has_icc), (2, 2, true));
        assert_eq!(webp_icc(&webp[..webp.len() - 8]), None);
    }

    #[test]
    fn hostile_lengths_never_panic() {
        let mut png =
            b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\0\0\0\0".to_vec();
        png.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xF0, b'a', b'b', b'c', b'd']);
        assert!(parse(&png).is_ok());
        let mut webp = b"RIFF\0\0\0\0WEBP".to_vec();
        webp.extend_from_slice(&[b'V', b'P', b'8', b'X', 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(parse(&webp).is_err());
        // Every prefix of a valid header is handled without panicking.
        let exif = crate::exif::exif_with_orientation(3, true);
        for cut in 0..png.len() {
            let _ = parse(&png[..cut]);
            let _ = parse(&webp[..cut.min(webp.len())]);
            let _ = crate::exif::orientation(&exif[..cut.min(exif.len())]);
        }
    }
}
