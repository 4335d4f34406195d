//! nclx colour (ITU-T H.273 code points, as HEIF and AVIF carry them) as an ICC profile, so
//! that one colour-management path (`color::to_srgb`) serves every format.

use lcms2::{CIExyY, CIExyYTRIPLE, Profile, ToneCurve};

use crate::isobmff::Nclx;

fn xy(x: f64, y: f64) -> CIExyY {
    CIExyY { x, y, Y: 1.0 }
}

const D65: (f64, f64) = (0.3127, 0.3290);

/// Chromaticities (x, y) of red, green, blue, and of the white point.
type Gamut = ([(f64, f64); 3], (f64, f64));

/// Primaries (R, G, B) and white point of a `colour_primaries` value, `None` when unknown.
fn primaries(code: u16) -> Option<Gamut> {
    Some(match code {
        // 2 is "unspecified": BT.709, what decoders and browsers assume.
        1 | 2 => ([(0.640, 0.330), (0.300, 0.600), (0.150, 0.060)], D65),
        5 => ([(0.640, 0.330), (0.290, 0.600), (0.150, 0.060)], D65),
        6 | 7 => ([(0.630, 0.340), (0.310, 0.595), (0.155, 0.070)], D65),
        9 => ([(0.708, 0.292), (0.170, 0.797), (0.131, 0.046)], D65),
        11 => (
            [(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)],
            (0.314, 0.351),
        ),
        12 => ([(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)], D65),
        _ => return None,
    })
}

/// The decoding curve of a `transfer_characteristics` value. PQ and HLG (HDR) have no
/// tone mapping here: they, and unknown values, read as sRGB, as an 8-bit SDR viewer shows them.
fn curve(code: u16) -> Option<ToneCurve> {
    match code {
        // BT.709 / BT.601 / BT.2020 camera curves, inverted.
        1 | 6 | 14 | 15 => ToneCurve::new_parametric(
            4,
            &[1.0 / 0.45, 1.0 / 1.099, 0.099 / 1.099, 1.0 / 4.5, 0.081],
        )
        .ok(),
        4 => Some(ToneCurve::new(2.2)),
        5 => Some(ToneCurve::new(2.8)),
        8 => Some(ToneCurve::new(1.0)),
        _ => ToneCurve::new_parametric(4, &[2.4, 1.0 / 1.055, 0.055 / 1.055, 1.0 / 12.92, 0.04045])
            .ok(),
    }
}

/// An ICC profile for `n`, or `None` when the pixels are sRGB already (BT.709 primaries with
/// the sRGB or an unspecified curve) or the code points are unknown.
pub fn profile(n: Nclx) -> Option<Vec<u8>> {
    let srgb_like = matches!(n.primaries, 1 | 2) && matches!(n.transfer, 2 | 13);
    if srgb_like {
        return None;
    }
    let (rgb, white) = primaries(n.primaries)?;
    let tri = CIExyYTRIPLE {
        Red: xy(rgb[0].0, rgb[0].1),
        Green: xy(rgb[1].0, rgb[1].1),
        Blue: xy(rgb[2].0, rgb[2].1),
    };
    let c = curve(n.transfer)?;
    Profile::new_rgb(&xy(white.0, white.1), &tri, &[&c, &c, &c])
        .ok()?
        .icc()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::to_srgb;
    use crate::decode::{Decoded, Layout};

    fn nclx(primaries: u16, transfer: u16) -> Nclx {
        Nclx {
            primaries,
            transfer,
            matrix: 6,
            full_range: true,
        }
    }

    fn through(n: Nclx, px: Vec<u8>) -> Vec<u8> {
        let d = Decoded {
            width: u32::try_from(px.len() / 3).unwrap(),
            height: 1,
            layout: Layout::Rgb,
            data: px,
            icc: profile(n),
        };
        to_srgb(d, 1).unwrap().data
    }

    #[test]
    fn srgb_code_points_need_no_profile() {
        assert!(profile(nclx(1, 13)).is_none());
        assert!(profile(nclx(2, 2)).is_none());
    }

    #[test]
    fn display_p3_matches_the_icc_profile_of_the_same_space() {
        let px = vec![40, 180, 60, 128, 128, 128, 250, 20, 30];
        let via_nclx = through(nclx(12, 13), px.clone());
        let via_icc = to_srgb(
            Decoded {
                width: 3,
                height: 1,
                layout: Layout::Rgb,
                data: px,
                icc: Some(crate::color::tests::display_p3_icc()),
            },
            1,
        )
        .unwrap()
        .data;
        for (a, b) in via_nclx.iter().zip(&via_icc) {
            assert!(a.abs_diff(*b) <= 1, "{via_nclx:?} vs {via_icc:?}");
        }
        // And it is a real conversion: a P3 green is out of sRGB's gamut.
        assert!(via_nclx[0] < 40 && via_nclx[1] > 180);
    }

    #[test]
    fn bt2020_greys_stay_grey() {
        let out = through(nclx(9, 14), vec![128, 128, 128]);
        assert!(
            out[0].abs_diff(out[1]) <= 1 && out[1].abs_diff(out[2]) <= 1,
            "{out:?}"
        );
    }
}
