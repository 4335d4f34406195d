//! The one in-memory image type passed between stages.

use crate::error::{ImgError, Result};
use crate::limits;

/// Interleaved 8-bit sRGB pixels: 3 channels (RGB) or 4 (RGBA, straight alpha).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// Pixel count of a `width` x `height` image, without overflow.
pub fn area(width: u32, height: u32) -> u64 {
    u64::from(width) * u64::from(height)
}

impl Pixels {
    pub fn area(&self) -> u64 {
        area(self.width, self.height)
    }

    /// Checks what the resizers and encoders rely on: RGB or RGBA, a non-empty size, and a
    /// buffer of exactly `width * height * channels` bytes.
    pub fn check(&self) -> Result<()> {
        if !matches!(self.channels, 3 | 4) {
            return Err(ImgError::InvalidArgument(format!(
                "{} channels per pixel: only RGB and RGBA are supported",
                self.channels
            )));
        }
        let want = limits::buffer_len(self.width, self.height, self.channels)?;
        if want == 0 || self.data.len() != want {
            return Err(ImgError::InvalidArgument(format!(
                "{}x{}x{} pixels need {want} bytes, got {}",
                self.width,
                self.height,
                self.channels,
                self.data.len()
            )));
        }
        Ok(())
    }

    /// Straight RGBA8, as the palette wants.
    pub fn to_rgba(&self) -> Vec<u8> {
        if self.channels == 4 {
            return self.data.clone();
        }
        self.data
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect()
    }
}
