//! Colour palette: dominant colours, the Material You seed colour, a ThumbHash.
//! (Interface placeholder: the real implementation replaces the body, not the signature.)

/// The palette of one image, computed from a small rendition (straight RGBA8).
#[derive(Debug, Clone, PartialEq)]
pub struct PaletteResult {
    /// Up to 8 dominant colours as sRGB with their share of the opaque pixels, largest first.
    pub colors: Vec<([u8; 3], f32)>,
    /// Material You seed colour (Celebi quantizer + Score), #4285F4 when nothing is chromatic.
    pub seed: [u8; 3],
    /// ThumbHash, standard base64.
    pub thumbhash: String,
}

/// `rgba` holds `width * height` straight-alpha RGBA8 pixels (at most 100x100 for the
/// ThumbHash; callers pass a thumbnail).
pub fn compute(rgba: &[u8], width: u32, height: u32) -> PaletteResult {
    let _ = (rgba, width, height);
    PaletteResult { colors: Vec::new(), seed: [0x42, 0x85, 0xF4], thumbhash: String::new() }
}
