//! sRGB, linear RGB and CIE L*a*b* conversions.
//!
//! These mirror material-color-utilities' C++ `utils.cc` and `lab.cc` down to the order of
//! floating-point operations: WSMeans only moves a point when it gets more than 3 ΔE closer,
//! so a last-bit difference in a Lab coordinate can change which cluster wins and, through
//! Score, the seed colour.

use std::sync::OnceLock;

/// Colours travel as 0xAARRGGBB like upstream, so map ordering and equality match its.
pub type Argb = u32;

pub const WHITE_POINT_D65: [f64; 3] = [95.047, 100.0, 108.883];

const EPSILON: f64 = 216.0 / 24389.0;
const KAPPA: f64 = 24389.0 / 27.0;

pub fn argb_from_rgb(red: u8, green: u8, blue: u8) -> Argb {
    0xFF00_0000 | (u32::from(red) << 16) | (u32::from(green) << 8) | u32::from(blue)
}

pub fn rgb_from_argb(argb: Argb) -> [u8; 3] {
    [(argb >> 16) as u8, (argb >> 8) as u8, argb as u8]
}

fn linearized_exact(component: u8) -> f64 {
    let normalized = f64::from(component) / 255.0;
    if normalized <= 0.040449936 {
        normalized / 12.92 * 100.0
    } else {
        ((normalized + 0.055) / 1.055).powf(2.4) * 100.0
    }
}

/// Linear RGB in 0..=100 of one 8-bit sRGB channel. A table is bit-identical to calling
/// `pow` and saves three `pow` calls for every distinct pixel colour.
pub fn linearized(component: u8) -> f64 {
    static TABLE: OnceLock<[f64; 256]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|i| linearized_exact(i as u8)))[usize::from(component)]
}

/// 8-bit sRGB channel of a linear RGB value in 0..=100, clamped like upstream.
pub fn delinearized(rgb_component: f64) -> u8 {
    let normalized = rgb_component / 100.0;
    let delinearized = if normalized <= 0.0031308 {
        normalized * 12.92
    } else {
        1.055 * normalized.powf(1.0 / 2.4) - 0.055
    };
    // `as` saturates and maps NaN to 0, which is what the C++ clamp yields on x86 too.
    ((delinearized * 255.0).round() as i32).clamp(0, 255) as u8
}

/// Linear RGB of an ARGB colour, each channel in 0..=100.
pub fn linear_rgb(argb: Argb) -> [f64; 3] {
    let [r, g, b] = rgb_from_argb(argb);
    [linearized(r), linearized(g), linearized(b)]
}

/// CIE XYZ (D65, Y in 0..=100) with upstream's sRGB matrix.
pub fn xyz_from_argb(argb: Argb) -> [f64; 3] {
    let [r, g, b] = linear_rgb(argb);
    [
        0.41233895 * r + 0.35762064 * g + 0.18051042 * b,
        0.2126 * r + 0.7152 * g + 0.0722 * b,
        0.01932141 * r + 0.11916382 * g + 0.95034478 * b,
    ]
}

/// L* of an ARGB colour: HCT's tone (Score no longer filters on it; kept for checks).
#[cfg(test)]
pub fn lstar_from_argb(argb: Argb) -> f64 {
    let [r, g, b] = linear_rgb(argb);
    let y = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 100.0;
    if y <= EPSILON {
        KAPPA * y
    } else {
        116.0 * y.powf(1.0 / 3.0) - 16.0
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Lab {
    pub l: f64,
    pub a: f64,
    pub b: f64,
}

fn lab_f(normalized: f64) -> f64 {
    if normalized > EPSILON {
        normalized.powf(1.0 / 3.0)
    } else {
        (KAPPA * normalized + 16.0) / 116.0
    }
}

impl Lab {
    pub fn from_argb(argb: Argb) -> Lab {
        let [x, y, z] = xyz_from_argb(argb);
        let fy = lab_f(y / WHITE_POINT_D65[1]);
        let fx = lab_f(x / WHITE_POINT_D65[0]);
        let fz = lab_f(z / WHITE_POINT_D65[2]);
        Lab {
            l: 116.0 * fy - 16.0,
            a: 500.0 * (fx - fy),
            b: 200.0 * (fy - fz),
        }
    }

    pub fn to_argb(self) -> Argb {
        let fy = (self.l + 16.0) / 116.0;
        let fx = self.a / 500.0 + fy;
        let fz = fy - self.b / 200.0;
        let fx3 = fx * fx * fx;
        let x_normalized = if fx3 > EPSILON {
            fx3
        } else {
            (116.0 * fx - 16.0) / KAPPA
        };
        let y_normalized = if self.l > 8.0 {
            fy * fy * fy
        } else {
            self.l / KAPPA
        };
        let fz3 = fz * fz * fz;
        let z_normalized = if fz3 > EPSILON {
            fz3
        } else {
            (116.0 * fz - 16.0) / KAPPA
        };
        let x = x_normalized * WHITE_POINT_D65[0];
        let y = y_normalized * WHITE_POINT_D65[1];
        let z = z_normalized * WHITE_POINT_D65[2];
        let r = 3.2406 * x - 1.5372 * y - 0.4986 * z;
        let g = -0.9689 * x + 1.8758 * y + 0.0415 * z;
        let b = 0.0557 * x - 0.2040 * y + 1.0570 * z;
        argb_from_rgb(delinearized(r), delinearized(g), delinearized(b))
    }

    /// Squared Euclidean distance, as upstream's `DeltaE` (no square root).
    pub fn delta_e(&self, other: &Lab) -> f64 {
        let dl = self.l - other.l;
        let da = self.a - other.a;
        let db = self.b - other.b;
        dl * dl + da * da + db * db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn lab_of_primaries_matches_cie_reference() {
        let white = Lab::from_argb(0xFFFF_FFFF);
        assert!(
            close(white.l, 100.0, 1e-3) && close(white.a, 0.0, 1e-2) && close(white.b, 0.0, 1e-2)
        );
        let black = Lab::from_argb(0xFF00_0000);
        assert_eq!(
            black,
            Lab {
                l: 0.0,
                a: 0.0,
                b: 0.0
            }
        );
        let red = Lab::from_argb(0xFFFF_0000);
        assert!(close(red.l, 53.2329, 1e-3), "{red:?}");
        assert!(
            close(red.a, 80.11, 0.05) && close(red.b, 67.22, 0.05),
            "{red:?}"
        );
        let blue = Lab::from_argb(0xFF00_00FF);
        assert!(
            close(blue.l, 32.3026, 1e-3) && close(blue.a, 79.19, 0.05),
            "{blue:?}"
        );
        assert!(close(blue.b, -107.86, 0.05), "{blue:?}");
    }

    #[test]
    fn lab_round_trips_greys_exactly_and_colours_within_one_step() {
        for v in 0..=255u8 {
            let argb = argb_from_rgb(v, v, v);
            assert_eq!(Lab::from_argb(argb).to_argb(), argb);
        }
        // Upstream's XYZ->sRGB matrix is a rounded inverse, so saturated colours may come
        // back one step off.
        for r in (0..=255u8).step_by(15) {
            for g in (0..=255u8).step_by(17) {
                for b in (0..=255u8).step_by(51) {
                    let back = rgb_from_argb(Lab::from_argb(argb_from_rgb(r, g, b)).to_argb());
                    let diff = back
                        .iter()
                        .zip([r, g, b])
                        .map(|(&x, y)| x.abs_diff(y))
                        .max();
                    assert!(diff <= Some(1), "{:?} -> {back:?}", [r, g, b]);
                }
            }
        }
    }

    #[test]
    fn tone_of_known_colours() {
        assert!(close(lstar_from_argb(0xFF42_85F4), 56.55034873735502, 1e-9));
        assert!(close(
            lstar_from_argb(0xFF80_8080),
            53.585013452169036,
            1e-9
        ));
        assert_eq!(lstar_from_argb(0xFF00_0000), 0.0);
    }

    #[test]
    fn delinearized_clamps() {
        assert_eq!(delinearized(-5.0), 0);
        assert_eq!(delinearized(150.0), 255);
        assert_eq!(delinearized(f64::NAN), 0);
    }
}
