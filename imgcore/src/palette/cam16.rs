//! CAM16 appearance (the hue and chroma of HCT) of sRGB colours.
//!
//! Only Score needs this, and only for the quantized cluster colours (at most 128 per image),
//! so the exact upstream formula is kept rather than a faster approximation.

use super::lab::{xyz_from_argb, Argb};
use std::f64::consts::PI;

/// Upstream's default viewing conditions (D65, L* 50 background, average surround) as
/// the C++ port hard-codes them: reproducing the constants rather than re-deriving them
/// keeps the hue and chroma bit-compatible with the reference.
struct ViewingConditions {
    background_y_to_white_point_y: f64,
    aw: f64,
    nbb: f64,
    ncb: f64,
    c: f64,
    n_c: f64,
    fl: f64,
    z: f64,
    rgb_d: [f64; 3],
}

const DEFAULT: ViewingConditions = ViewingConditions {
    background_y_to_white_point_y: 0.184186503,
    aw: 29.981000900,
    nbb: 1.016919255,
    ncb: 1.016919255,
    c: 0.689999998,
    n_c: 1.000000000,
    fl: 0.388481468,
    z: 1.909169555,
    rgb_d: [1.021177769, 0.986307740, 0.933960497],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cam {
    /// Hue angle in degrees, 0 (inclusive) to 360 (exclusive).
    pub hue: f64,
    pub chroma: f64,
    /// Lightness J.
    pub j: f64,
}

fn signum(x: f64) -> f64 {
    if x < 0.0 {
        -1.0
    } else if x == 0.0 {
        0.0
    } else {
        1.0
    }
}

pub fn sanitize_degrees(degrees: f64) -> f64 {
    if degrees < 0.0 {
        degrees % 360.0 + 360.0
    } else if degrees >= 360.0 {
        degrees % 360.0
    } else {
        degrees
    }
}

/// Smallest angle between two hues, in degrees.
pub fn diff_degrees(a: f64, b: f64) -> f64 {
    180.0 - ((a - b).abs() - 180.0).abs()
}

fn adapted(component: f64, vc: &ViewingConditions) -> f64 {
    let af = (vc.fl * component.abs() / 100.0).powf(0.42);
    signum(component) * 400.0 * af / (af + 27.13)
}

pub fn cam_from_argb(argb: Argb) -> Cam {
    let vc = &DEFAULT;
    let [x, y, z] = xyz_from_argb(argb);

    // Cone responses, then discounting the illuminant.
    let r_c = 0.401288 * x + 0.650173 * y - 0.051461 * z;
    let g_c = -0.250268 * x + 1.204414 * y + 0.045854 * z;
    let b_c = -0.002079 * x + 0.048952 * y + 0.953127 * z;
    let r_a = adapted(vc.rgb_d[0] * r_c, vc);
    let g_a = adapted(vc.rgb_d[1] * g_c, vc);
    let b_a = adapted(vc.rgb_d[2] * b_c, vc);

    let a = (11.0 * r_a + -12.0 * g_a + b_a) / 11.0;
    let b = (r_a + g_a - 2.0 * b_a) / 9.0;
    let u = (20.0 * r_a + 20.0 * g_a + 21.0 * b_a) / 20.0;
    let p2 = (40.0 * r_a + 20.0 * g_a + b_a) / 20.0;

    let degrees = b.atan2(a) * 180.0 / PI;
    let hue = sanitize_degrees(degrees);
    let ac = p2 * vc.nbb;
    let j = 100.0 * (ac / vc.aw).powf(vc.c * vc.z);

    let hue_prime = if hue < 20.14 { hue + 360.0 } else { hue };
    let e_hue = 0.25 * ((hue_prime * PI / 180.0 + 2.0).cos() + 3.8);
    let p1 = 50000.0 / 13.0 * e_hue * vc.n_c * vc.ncb;
    let t = p1 * (a * a + b * b).sqrt() / (u + 0.305);
    let alpha = t.powf(0.9) * (1.64 - 0.29f64.powf(vc.background_y_to_white_point_y)).powf(0.73);
    let chroma = alpha * (j / 100.0).sqrt();
    Cam { hue, chroma, j }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values are what material-color-utilities (PyPI 0.2.6, the C++ port) reports.
    fn check(argb: Argb, hue: f64, chroma: f64) {
        let cam = cam_from_argb(argb);
        assert!(
            (cam.hue - hue).abs() < 1e-9,
            "{argb:08x}: hue {} != {hue}",
            cam.hue
        );
        assert!(
            (cam.chroma - chroma).abs() < 1e-9,
            "{argb:08x}: chroma {} != {chroma}",
            cam.chroma
        );
    }

    #[test]
    fn hct_of_known_colours_matches_upstream() {
        check(0xFF42_85F4, 265.9794034468702, 62.26911056191568);
        check(0xFFFF_0000, 27.408223459863496, 113.35790113829388);
        check(0xFF00_FF00, 142.13988844767218, 108.41005425350042);
        check(0xFF00_00FF, 282.78818266204587, 87.23069670899639);
        check(0xFFFF_FFFF, 209.49210705653425, 2.869014986247083);
        check(0xFF80_8080, 209.49397315440305, 1.8960082637639395);
    }

    #[test]
    fn black_has_no_chroma() {
        let cam = cam_from_argb(0xFF00_0000);
        assert_eq!((cam.hue, cam.chroma, cam.j), (0.0, 0.0, 0.0));
    }

    #[test]
    fn hue_differences_wrap_around() {
        assert_eq!(diff_degrees(350.0, 10.0), 20.0);
        assert_eq!(diff_degrees(10.0, 350.0), 20.0);
        assert_eq!(diff_degrees(0.0, 180.0), 180.0);
        assert_eq!(sanitize_degrees(-30.0), 330.0);
        assert_eq!(sanitize_degrees(720.5), 0.5);
    }
}
