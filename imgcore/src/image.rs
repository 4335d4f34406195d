//! The one in-memory image type passed between stages.

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
