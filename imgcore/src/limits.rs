//! Pixel and allocation limits, checked from the header before any pixel buffer exists.

use crate::error::{ImgError, Result};
use crate::image::area;

/// Refuses zero-sized images and images above `max_pixels`; all arithmetic is widened to u64
/// because header dimensions are untrusted.
pub fn check_dimensions(width: u32, height: u32, max_pixels: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(ImgError::corrupt(format!(
            "zero dimension {width}x{height}"
        )));
    }
    let pixels = area(width, height);
    if pixels > max_pixels {
        return Err(ImgError::TooLarge(format!(
            "image too large: {width}x{height} = {pixels} pixels exceeds the limit of {max_pixels}"
        )));
    }
    Ok(())
}

/// Allocation budget handed to decoders: a legal image at 16 bits per channel with alpha
/// (8 bytes per pixel) plus room for decoder scratch buffers.
pub fn max_alloc_bytes(max_pixels: u64) -> u64 {
    max_pixels.saturating_mul(8).saturating_add(64 << 20)
}

/// `width * height * channels` as usize, or an error when it cannot be addressed.
pub fn buffer_len(width: u32, height: u32, channels: usize) -> Result<usize> {
    usize::try_from(width)
        .ok()
        .and_then(|w| w.checked_mul(usize::try_from(height).ok()?))
        .and_then(|p| p.checked_mul(channels))
        .ok_or_else(|| ImgError::TooLarge(format!("image too large: {width}x{height}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bombs_and_zero() {
        assert!(matches!(
            check_dimensions(65535, 66601, 100_000_000),
            Err(ImgError::TooLarge(_))
        ));
        assert!(matches!(
            check_dimensions(65536, 65536, 100_000_000),
            Err(ImgError::TooLarge(_))
        ));
        assert!(matches!(
            check_dimensions(0, 10, 100),
            Err(ImgError::Corrupt(_))
        ));
        assert!(check_dimensions(9643, 10328, 100_000_000).is_ok());
        assert!(check_dimensions(10, 10, 100).is_ok());
        assert!(check_dimensions(10, 11, 100).is_err());
    }

    #[test]
    fn alloc_budget_fits_a_legal_16_bit_rgba_image() {
        assert!(max_alloc_bytes(100_000_000) >= 800_000_000);
        assert_eq!(max_alloc_bytes(u64::MAX), u64::MAX);
    }
}
