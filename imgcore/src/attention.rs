//! Where a cover crop goes when the image has no focal point: the region of highest saliency,
//! computed as libvips' `vips_smartcrop(..., interesting=VIPS_INTERESTING_ATTENTION)` does
//! (libvips 8.10 and later; checked against 8.18 through pyvips):
//!
//! 1. the image is resampled to a `GRID` x `GRID` square (each axis on its own), here from the
//!    palette's 128 px thumbnail rather than from the source; alpha is premultiplied;
//! 2. it goes to CIE XYZ (D65, Y from 0 to 100), and three scores are summed per pixel:
//!    - edges: |5 x Laplacian of Y| (4-neighbour kernel, edges extended);
//!    - skin: 100 - 100 x the distance between the XYZ colour scaled to unit length and the
//!      point (0.78, 0.57, 0.44) (smartcrop.js' skin colour);
//!    - saturation: CIELAB `a*` (libvips scores the red-green axis, not chroma: a green area
//!      scores below a grey one);
//!
//!    skin and saturation count only where Y > 5 (dark areas score nothing);
//! 3. for each crop window, the sum is blurred by a Gaussian whose sigma grows with the
//!    window: hypot of the window's width and height in grid cells, / 10, at least 1 (weights
//!    down to 0.2 of the peak, edges extended), and the crop is centred on the maximum (the
//!    first one in raster order), then clamped inside the image by the planner.
//!
//! One difference on purpose: libvips centres the crop on the maximum's grid cell's top-left
//! corner (cell x W / 32); here it is centred on the cell's centre, so that a symmetric image
//! gets a centred crop. That moves a crop by 1/64 of the image at most.
//!
//! On a 32 x 32 grid everything after the thumbnail takes tens of microseconds.

use fast_image_resize::Resizer;

use crate::error::Result;
use crate::image::Pixels;
use crate::rendition::{Crop, Focus};
use crate::resize;

/// The side of the square the saliency is computed on (libvips' precision for the crop).
pub const GRID: usize = 32;

/// The summed saliency score of every grid cell, row by row.
#[derive(Clone, Debug, PartialEq)]
pub struct Saliency {
    score: Vec<f32>,
}

/// CIE XYZ of one pixel, Y from 0 to 100.
type Xyz = [f32; 3];

/// D65 white in XYZ, Y = 100, as libvips' XYZ to Lab conversion uses.
const WHITE: Xyz = [95.047, 100.0, 108.883];
/// smartcrop.js' skin colour, as a direction in XYZ.
const SKIN: Xyz = [0.78, 0.57, 0.44];
/// Below this Y a pixel is dark: no skin, no saturation.
const DARK_Y: f32 = 5.0;

/// The saliency of `thumb` (the oriented palette thumbnail, 3 or 4 channels).
pub fn saliency(thumb: &Pixels) -> Result<Saliency> {
    let side = GRID as u32;
    let full = Crop::full(thumb.width, thumb.height);
    let grid = resize::resize(&mut Resizer::new(), thumb, full, side, side)?;
    let xyz: Vec<Xyz> = grid
        .data
        .chunks_exact(grid.channels)
        .map(|px| {
            let alpha = if grid.channels == 4 {
                f32::from(px[3]) / 255.0
            } else {
                1.0
            };
            to_xyz([px[0], px[1], px[2]], alpha)
        })
        .collect();
    let luma: Vec<f32> = xyz.iter().map(|c| c[1]).collect();
    let edges = laplacian(&luma, GRID, GRID);
    let score = xyz
        .iter()
        .zip(&edges)
        .map(|(&c, &edge)| {
            let colour = if c[1] > DARK_Y {
                skin(c) + lab_a(c)
            } else {
                0.0
            };
            (5.0 * edge).abs() + colour
        })
        .collect();
    Ok(Saliency { score })
}

impl Saliency {
    /// Where to centre a crop window `width_fraction` x `height_fraction` of the image (each
    /// in 0..=1), as fractions of the image's width and height.
    pub fn focus(&self, width_fraction: f64, height_fraction: f64) -> Focus {
        let cells = GRID as f64;
        let sigma = ((width_fraction * cells).hypot(height_fraction * cells) / 10.0).max(1.0);
        let blurred = gaussian_blur(&self.score, GRID, GRID, sigma as f32);
        let (x, y) = argmax(&blurred, GRID);
        Focus {
            x: (x as f64 + 0.5) / cells,
            y: (y as f64 + 0.5) / cells,
        }
    }
}

/// sRGB to linear light, 0..=1.
fn linear(v: u8) -> f32 {
    let c = f32::from(v) / 255.0;
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// XYZ (Y to 100) of an sRGB colour, premultiplied by `alpha` in linear light.
fn to_xyz(rgb: [u8; 3], alpha: f32) -> Xyz {
    let [r, g, b] = rgb.map(|v| linear(v) * alpha * 100.0);
    [
        0.4124 * r + 0.3576 * g + 0.1805 * b,
        0.2126 * r + 0.7152 * g + 0.0722 * b,
        0.0193 * r + 0.1192 * g + 0.9505 * b,
    ]
}

/// 100 for a colour in the skin direction, falling by 100 per unit of distance from it.
fn skin(c: Xyz) -> f32 {
    let norm = (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt();
    if norm == 0.0 {
        return 100.0 - 100.0 * (SKIN.iter().map(|s| s * s).sum::<f32>()).sqrt();
    }
    let d: f32 = c
        .iter()
        .zip(SKIN)
        .map(|(v, s)| (v / norm - s).powi(2))
        .sum();
    100.0 - 100.0 * d.sqrt()
}

/// CIELAB a* (D65) of an XYZ colour.
fn lab_a(c: Xyz) -> f32 {
    fn f(t: f32) -> f32 {
        const EPS: f32 = 216.0 / 24389.0;
        const KAPPA: f32 = 24389.0 / 27.0;
        if t > EPS {
            t.cbrt()
        } else {
            (KAPPA * t + 16.0) / 116.0
        }
    }
    500.0 * (f(c[0] / WHITE[0]) - f(c[1] / WHITE[1]))
}

/// Index of `(x, y)` in a `w` x `h` plane, coordinates clamped to its edges.
fn at(x: isize, y: isize, w: usize, h: usize) -> usize {
    let cx = x.clamp(0, w as isize - 1) as usize;
    let cy = y.clamp(0, h as isize - 1) as usize;
    cy * w + cx
}

/// 4 v - (left + right + up + down), edges extended.
fn laplacian(plane: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0.0; plane.len()];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let v = plane[at(x, y, w, h)];
            let around = plane[at(x - 1, y, w, h)]
                + plane[at(x + 1, y, w, h)]
                + plane[at(x, y - 1, w, h)]
                + plane[at(x, y + 1, w, h)];
            out[at(x, y, w, h)] = 4.0 * v - around;
        }
    }
    out
}

/// Normalised Gaussian weights for offsets -r..=r, r the last offset whose weight is at least
/// 0.2 of the centre's (libvips' `gaussblur` default `min_ampl`).
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let weight = |x: f32| (-(x * x) / (2.0 * sigma * sigma)).exp();
    let mut radius = 0usize;
    while weight((radius + 1) as f32) >= 0.2 {
        radius += 1;
    }
    let taps: Vec<f32> = (0..=2 * radius)
        .map(|i| weight(i as f32 - radius as f32))
        .collect();
    let total: f32 = taps.iter().sum();
    taps.into_iter().map(|t| t / total).collect()
}

/// Separable Gaussian blur of a `w` x `h` plane, edges extended.
fn gaussian_blur(plane: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    let taps = gaussian_kernel(sigma);
    let r = (taps.len() / 2) as isize;
    let pass = |src: &[f32], dx: isize, dy: isize| -> Vec<f32> {
        let mut out = vec![0.0; src.len()];
        for y in 0..h as isize {
            for x in 0..w as isize {
                out[at(x, y, w, h)] = taps
                    .iter()
                    .zip(-r..=r)
                    .map(|(t, k)| t * src[at(x + k * dx, y + k * dy, w, h)])
                    .sum();
            }
        }
        out
    };
    pass(&pass(plane, 1, 0), 0, 1)
}

/// `(x, y)` of the largest value, the first in raster order among equals.
fn argmax(plane: &[f32], w: usize) -> (usize, usize) {
    let mut best = 0;
    for (i, &v) in plane.iter().enumerate() {
        if v > plane[best] {
            best = i;
        }
    }
    (best % w, best / w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Pixels {
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .flat_map(|(x, y)| f(x, y))
            .collect();
        Pixels {
            width: w,
            height: h,
            channels: 3,
            data,
        }
    }

    #[test]
    fn xyz_and_lab_of_known_colours() {
        let white = to_xyz([255, 255, 255], 1.0);
        assert!((white[1] - 100.0).abs() < 0.01 && (white[0] - 95.05).abs() < 0.05);
        assert!(lab_a(white).abs() < 0.1);
        // sRGB red is a* = 80.1, green a* = -86.2 (D65).
        assert!((lab_a(to_xyz([255, 0, 0], 1.0)) - 80.1).abs() < 0.5);
        assert!((lab_a(to_xyz([0, 255, 0], 1.0)) + 86.2).abs() < 0.5);
        // Transparent is black.
        assert_eq!(to_xyz([200, 100, 50], 0.0), [0.0; 3]);
    }

    #[test]
    fn skin_scores_skin_above_grey_and_blue() {
        let tone = skin(to_xyz([224, 172, 138], 1.0));
        let grey = skin(to_xyz([128, 128, 128], 1.0));
        let blue = skin(to_xyz([40, 60, 200], 1.0));
        assert!(
            tone > 80.0 && tone > grey && grey > blue,
            "{tone} {grey} {blue}"
        );
        // The skin direction itself: SKIN is 1.06 long, so its unit vector is 0.06 from it.
        let n = SKIN.iter().map(|s| s * s).sum::<f32>().sqrt();
        assert!((skin(SKIN.map(|s| s * 50.0)) - (100.0 - 100.0 * (n - 1.0))).abs() < 1e-3);
    }

    #[test]
    fn laplacian_is_zero_on_flat_and_ramps_and_marks_a_dot() {
        let (w, h) = (8, 6);
        assert!(laplacian(&vec![7.0; w * h], w, h).iter().all(|&v| v == 0.0));
        let ramp: Vec<f32> = (0..w * h).map(|i| (i % w) as f32).collect();
        let lap = laplacian(&ramp, w, h);
        // Inside a linear ramp the second derivative is 0; at the extended edges it is not.
        assert!((1..w - 1).all(|x| lap[2 * w + x] == 0.0));
        let mut dot = vec![0.0; w * h];
        dot[3 * w + 4] = 1.0;
        let lap = laplacian(&dot, w, h);
        assert_eq!(lap[3 * w + 4], 4.0);
        assert_eq!(lap[3 * w + 3], -1.0);
        assert_eq!(lap.iter().sum::<f32>(), 0.0);
    }

    #[test]
    fn the_gaussian_is_normalised_symmetric_and_cut_at_a_fifth() {
        for sigma in [1.0f32, 3.2, 4.5] {
            let k = gaussian_kernel(sigma);
            assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(k
                .iter()
                .zip(k.iter().rev())
                .all(|(a, b)| (a - b).abs() < 1e-7));
            let r = k.len() / 2;
            assert!(k[0] / k[r] >= 0.2 - 1e-6);
            let beyond = (-((r + 1) as f32).powi(2) / (2.0 * sigma * sigma)).exp();
            assert!(beyond < 0.2, "sigma {sigma}: radius {r} too small");
        }
        // sigma 1: exp(-1/2) = 0.61, exp(-2) = 0.135: radius 1.
        assert_eq!(gaussian_kernel(1.0).len(), 3);
        // A blurred plane keeps its mean away from the edges and its peak where it was.
        let mut plane = vec![0.0; GRID * GRID];
        plane[10 * GRID + 20] = 1.0;
        let b = gaussian_blur(&plane, GRID, GRID, 3.0);
        assert_eq!(argmax(&b, GRID), (20, 10));
        assert!((b.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }

    #[test]
    fn argmax_takes_the_first_of_equals() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 0.0, 3.0, 2.0], 3), (1, 0));
        assert_eq!(argmax(&[0.0; 6], 3), (0, 0));
    }

    #[test]
    fn a_flat_image_is_cropped_at_the_top_left_like_libvips() {
        // Every cell scores the same: libvips' first maximum is the first cell.
        let flat = saliency(&image(128, 85, |_, _| [90, 90, 90])).unwrap();
        let f = flat.focus(0.5, 1.0);
        assert_eq!((f.x, f.y), (0.5 / 32.0, 0.5 / 32.0));
    }

    #[test]
    fn the_focus_finds_an_off_centre_subject() {
        // A red, edgy disc on smooth grey-blue, right of centre and high.
        for (w, h, cx, cy) in [
            (128u32, 85u32, 0.8, 0.3),
            (85, 128, 0.25, 0.75),
            (128, 128, 0.6, 0.6),
        ] {
            let px = image(w, h, |x, y| {
                let dx = f64::from(x) / f64::from(w) - cx;
                let dy = f64::from(y) / f64::from(h) - cy;
                if dx.hypot(dy) < 0.08 {
                    if (x + y) % 4 < 2 {
                        [230, 40, 40]
                    } else {
                        [250, 200, 170]
                    }
                } else {
                    [100, 110, 130]
                }
            });
            let s = saliency(&px).unwrap();
            for (fw, fh) in [(0.4, 1.0), (1.0, 0.5), (0.7, 1.0)] {
                let f = s.focus(fw, fh);
                assert!(
                    (f.x - cx).abs() < 0.06 && (f.y - cy).abs() < 0.06,
                    "{w}x{h} {fw}x{fh}: {f:?}"
                );
            }
        }
    }

    #[test]
    fn transparent_pixels_score_as_black() {
        // Opaque red left, transparent red right: the saturation is on the left.
        let data = (0..64 * 64)
            .flat_map(|i| {
                if i % 64 < 20 {
                    [220, 30, 30, 255]
                } else {
                    [220, 30, 30, 0]
                }
            })
            .collect();
        let px = Pixels {
            width: 64,
            height: 64,
            channels: 4,
            data,
        };
        let f = saliency(&px).unwrap().focus(0.3, 1.0);
        assert!(f.x < 0.35, "{f:?}");
    }
}
