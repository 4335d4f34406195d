//! Colour palette: dominant colours, the Material You seed colour, a ThumbHash.
//!
//! The seed follows material-color-utilities' C++ port (what the PyPI package wraps):
//! QuantizerCelebi (Wu, then WSMeans, at most 128 colours) followed by Score.

mod cam16;
mod lab;
mod score;
mod thumb;
mod thumb_hash;
mod wsmeans;
mod wu;

use lab::{Argb, Lab};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Colour budget of upstream's image quantization for theming.
const SEED_MAX_COLORS: usize = 128;
const DOMINANT_MAX_COLORS: usize = 8;
/// Score's `desired` in upstream's default options.
const SEED_CANDIDATES: usize = 4;
/// Merging at most 128 weighted colours converges in a few rounds; the cap only bounds
/// the worst case.
const DOMINANT_MODE: wsmeans::Mode = wsmeans::Mode::Nearest {
    max_iterations: 100,
};

/// The palette of one image, computed from its thumbnail (straight RGBA8).
#[derive(Debug, Clone, PartialEq)]
pub struct PaletteResult {
    /// Up to 8 dominant colours as sRGB with their share of the opaque pixels, largest first.
    pub colors: Vec<([u8; 3], f32)>,
    /// Material You seed colour (Celebi quantizer + Score), #4285F4 when nothing is chromatic.
    pub seed: [u8; 3],
    /// Score's suggestions, best first (up to 4, as upstream's `Score.score(..., desired: 4)`);
    /// the first is `seed`. Colours that score alike can swap places when the thumbnail
    /// changes slightly, so a UI may offer them all.
    pub seed_candidates: Vec<[u8; 3]>,
    /// ThumbHash, standard base64.
    pub thumbhash: String,
}

/// `rgba` holds `width * height` straight-alpha RGBA8 pixels (at most 100x100 for the
/// ThumbHash; callers pass a thumbnail).
///
/// Never panics: a buffer shorter than `width * height * 4` is read as its complete rows;
/// an image without visible pixels gets no colours, and one without chromatic opaque pixels
/// the fallback seed.
pub fn compute(rgba: &[u8], width: u32, height: u32) -> PaletteResult {
    let width = width as usize;
    let rows = (rgba.len() / 4)
        .checked_div(width)
        .map_or(0, |complete| complete.min(height as usize));
    let rgba = &rgba[..width * rows * 4];

    let distinct = distinct_opaque_colors(rgba);
    let histogram = wu::Histogram::new(&distinct);
    // QuantizerCelebi, then Score, as upstream's `SourceColorFromImage`.
    let clusters = quantize_all(
        &distinct,
        &histogram,
        SEED_MAX_COLORS,
        wsmeans::Mode::Upstream,
    );
    // Never empty: Google Blue when nothing qualifies.
    let candidates = score::ranked_suggestions(&clusters, SEED_CANDIDATES);
    let seed = candidates.first().copied().unwrap_or(score::FALLBACK);

    // Upstream's seed reads only opaque pixels. The dominant colours describe what is seen:
    // when some pixels are translucent (a logo's anti-aliased edge, a faded overlay, a
    // thumbnail of a small opaque shape), every visible pixel counts, weighted by its alpha.
    let colors = match visible_colors_if_translucent(rgba) {
        None => dominant_colors(&histogram, &clusters),
        Some(visible) => {
            let histogram = wu::Histogram::new(&visible);
            let clusters = quantize_all(&visible, &histogram, SEED_MAX_COLORS, DOMINANT_MODE);
            dominant_colors(&histogram, &clusters)
        }
    };

    PaletteResult {
        colors,
        seed: lab::rgb_from_argb(seed),
        seed_candidates: candidates.into_iter().map(lab::rgb_from_argb).collect(),
        thumbhash: thumb::thumbhash_base64(rgba, width, rows),
    }
}

/// The dominant colours merge the (up to) 128 seed clusters into 8 with weighted k-means,
/// started from Wu's first 8 boxes (Wu's cuts go where the variance is). Each seed cluster
/// is the mean of its pixels, so a merged colour is the mean of its pixels too and its
/// share is exact, while k-means over 128 weighted colours instead of every distinct pixel
/// colour costs next to nothing. Points start in their nearest cluster rather than
/// upstream's pseudo-random one, which only matters for reproducing the seed.
fn dominant_colors(histogram: &wu::Histogram, clusters: &[(Argb, u32)]) -> Vec<([u8; 3], f32)> {
    let total: u64 = clusters.iter().map(|&(_, c)| u64::from(c)).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut merged = quantize_all(clusters, histogram, DOMINANT_MAX_COLORS, DOMINANT_MODE);
    merged.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    merged
        .into_iter()
        .map(|(argb, count)| {
            (
                lab::rgb_from_argb(argb),
                (f64::from(count) / total as f64) as f32,
            )
        })
        .collect()
}

/// Celebi's two steps (Wu boxes, then WSMeans) over weighted distinct colours, sorted by
/// colour.
fn quantize_all(
    distinct: &[(Argb, u32)],
    histogram: &wu::Histogram,
    max_colors: usize,
    mode: wsmeans::Mode,
) -> Vec<(Argb, u32)> {
    let points: Vec<Lab> = distinct
        .iter()
        .map(|&(argb, _)| Lab::from_argb(argb))
        .collect();
    let counts: Vec<u32> = distinct.iter().map(|&(_, count)| count).collect();
    let starting = histogram.quantize(max_colors);
    let guesses: Vec<usize> = distinct
        .iter()
        .map(|&(argb, _)| starting.owner(argb))
        .collect();
    let mut clusters = wsmeans::quantize(
        &points,
        &counts,
        &guesses,
        &starting.colors,
        max_colors,
        mode,
    );
    clusters.sort_unstable_by_key(|&(argb, _)| argb);
    clusters
}

/// Distinct colours of every pixel that is not fully transparent, each weighted by the sum
/// of its pixels' alpha; None when no pixel is translucent (then the opaque colours are the
/// visible ones, with the same weights).
fn visible_colors_if_translucent(rgba: &[u8]) -> Option<Vec<(Argb, u32)>> {
    if !rgba.chunks_exact(4).any(|px| px[3] != 0 && px[3] != 255) {
        return None;
    }
    Some(distinct_colors(rgba, u32::from))
}

/// Distinct fully opaque colours (upstream ignores any pixel with alpha < 255) with their
/// pixel counts, in order of first appearance: WSMeans' pseudo-random start is drawn in
/// that order, so it must match upstream's.
fn distinct_opaque_colors(rgba: &[u8]) -> Vec<(Argb, u32)> {
    distinct_colors(rgba, |alpha| u32::from(alpha == 255))
}

/// Distinct colours in order of first appearance, each with the summed `weight` of its
/// pixels' alpha; pixels of weight 0 are left out.
fn distinct_colors(rgba: &[u8], weight: impl Fn(u8) -> u32) -> Vec<(Argb, u32)> {
    let mut index: HashMap<Argb, usize, BuildHasherDefault<ColorHasher>> =
        HashMap::with_capacity_and_hasher((rgba.len() / 4).min(1 << 16), Default::default());
    let mut distinct: Vec<(Argb, u32)> = Vec::new();
    for px in rgba.chunks_exact(4) {
        let w = weight(px[3]);
        if w == 0 {
            continue;
        }
        let argb = lab::argb_from_rgb(px[0], px[1], px[2]);
        let slot = *index.entry(argb).or_insert_with(|| {
            distinct.push((argb, 0));
            distinct.len() - 1
        });
        distinct[slot].1 = distinct[slot].1.saturating_add(w);
    }
    distinct
}

/// The default SipHash costs more than the rest of the distinct-colour pass; keys are
/// pixel colours, not attacker-chosen, so a multiplicative hash is enough.
#[derive(Default)]
struct ColorHasher(u64);

impl Hasher for ColorHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }

    fn write_u32(&mut self, value: u32) {
        let h = (self.0 ^ u64::from(value)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(pixels: &[[u8; 4]]) -> Vec<u8> {
        pixels.iter().flatten().copied().collect()
    }

    #[test]
    fn two_solid_colours_with_their_shares() {
        let mut px = vec![[255, 0, 0, 255]; 75];
        px.extend(vec![[0, 0, 255, 255]; 25]);
        let result = compute(&image(&px), 10, 10);
        assert_eq!(
            result.colors,
            vec![([255, 0, 0], 0.75), ([0, 0, 255], 0.25)]
        );
        assert_eq!(result.seed, [255, 0, 0]);
        // Blue is the only other candidate: 90 degrees of hue away and common enough.
        assert_eq!(result.seed_candidates, vec![[255, 0, 0], [0, 0, 255]]);
        assert!(!result.thumbhash.is_empty());
    }

    #[test]
    fn translucent_pixels_count_by_alpha_for_colours_but_not_for_the_seed() {
        let mut px = vec![[0, 200, 0, 255]; 30];
        px.extend(vec![[255, 0, 0, 51]; 50]); // 50 pixels at alpha 0.2: the weight of 10
        px.extend(vec![[0, 0, 255, 0]; 20]); // invisible
        let result = compute(&image(&px), 10, 10);
        assert_eq!(
            result.colors,
            vec![([0, 200, 0], 0.75), ([255, 0, 0], 0.25)]
        );
        assert_eq!(result.seed, [0, 200, 0]); // upstream reads opaque pixels only
    }

    #[test]
    fn an_image_without_opaque_pixels_still_has_colours() {
        let px = vec![[30, 60, 200, 174]; 100];
        let result = compute(&image(&px), 10, 10);
        assert_eq!(result.colors, vec![([30, 60, 200], 1.0)]);
        assert_eq!(result.seed, [0x42, 0x85, 0xF4]);
    }

    #[test]
    fn greyscale_falls_back_to_google_blue() {
        let px: Vec<[u8; 4]> = (0..=255u8).map(|v| [v, v, v, 255]).collect();
        let result = compute(&image(&px), 16, 16);
        assert_eq!(result.seed, [0x42, 0x85, 0xF4]);
        assert_eq!(result.seed_candidates, vec![[0x42, 0x85, 0xF4]]);
        assert!(!result.colors.is_empty() && result.colors.len() <= 8);
        let total: f32 = result.colors.iter().map(|c| c.1).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert!(result.colors.windows(2).all(|w| w[0].1 >= w[1].1));
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let blue = [0x42, 0x85, 0xF4];
        for (rgba, w, h) in [
            (vec![], 0, 0),
            (vec![], 10, 10),
            (vec![1, 2, 3], 1, 1),
            (vec![0; 4 * 9], 3, 3),
            (vec![9; 4 * 9], 0, 9),
            (vec![255; 4 * 5], u32::MAX, u32::MAX),
        ] {
            let result = compute(&rgba, w, h);
            assert_eq!(result.seed, blue);
        }
        let one = compute(&[200, 30, 30, 255], 1, 1);
        assert_eq!(one.colors, vec![([200, 30, 30], 1.0)]);
        assert_eq!(one.seed, [200, 30, 30]);
        assert!(compute(&[0; 4 * 9], 3, 3).colors.is_empty());
    }

    #[test]
    fn random_inputs_keep_the_invariants() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..60 {
            let (w, h) = ((next() % 24) as u32, (next() % 24) as u32);
            // Sometimes a short buffer, sometimes few distinct colours or partial alpha.
            let cut = (next() % 3 == 0) as usize * (next() % 8) as usize;
            let len = ((w * h * 4) as usize).saturating_sub(cut);
            let palette = 1 + next() % 300;
            let rgba: Vec<u8> = (0..len)
                .map(|i| match i % 4 {
                    3 if next() % 4 == 0 => (next() % 256) as u8,
                    3 => 255,
                    _ => (next() % palette * 7 % 256) as u8,
                })
                .collect();
            let result = compute(&rgba, w, h);
            assert!(result.colors.len() <= 8);
            assert!((1..=4).contains(&result.seed_candidates.len()));
            assert_eq!(result.seed_candidates[0], result.seed);
            if !result.colors.is_empty() {
                let total: f32 = result.colors.iter().map(|c| c.1).sum();
                assert!((total - 1.0).abs() < 1e-4, "{total}");
                assert!(result.colors.windows(2).all(|p| p[0].1 >= p[1].1));
            }
        }
    }

    #[test]
    fn many_colours_stay_within_eight() {
        let px: Vec<[u8; 4]> = (0..112 * 112u32)
            .map(|i| {
                [
                    (i % 112 * 2) as u8,
                    (i / 112 * 2) as u8,
                    (i * 7 % 256) as u8,
                    255,
                ]
            })
            .collect();
        let result = compute(&image(&px), 112, 112);
        assert_eq!(result.colors.len(), 8);
        let total: f32 = result.colors.iter().map(|c| c.1).sum();
        assert!((total - 1.0).abs() < 1e-4);
        assert!(!result.thumbhash.is_empty());
    }
}
