//! Rendition geometry and names, in display (post-orientation) coordinates.

use crate::error::{ImgError, Result};

/// A requested rendition: width, optional box height, cover (fill and crop) or fit inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub width: u32,
    pub height: Option<u32>,
    pub cover: bool,
}

/// Source region that a rendition samples, in source pixels (fractional for centred crops).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crop {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl Crop {
    pub fn full(width: u32, height: u32) -> Self {
        Self {
            left: 0.0,
            top: 0.0,
            width: f64::from(width),
            height: f64::from(height),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub crop: Crop,
}

impl Plan {
    pub fn is_full_frame(&self, src_w: u32, src_h: u32) -> bool {
        self.crop == Crop::full(src_w, src_h)
    }
}

/// `a * b / c` rounded half up, at least 1; inputs are u32 so the u64 product cannot overflow.
fn scaled(a: u32, b: u32, c: u32) -> u32 {
    let num = u64::from(a) * u64::from(b) * 2 + u64::from(c);
    let v = num / (2 * u64::from(c).max(1));
    u32::try_from(v).unwrap_or(u32::MAX).max(1)
}

/// Where a cover crop is centred, as fractions of the display width and height.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Focus {
    pub x: f64,
    pub y: f64,
}

impl Focus {
    pub const CENTRE: Self = Self { x: 0.5, y: 0.5 };

    /// Fractions in 0..=1, or an error (NaN and infinities included).
    pub fn new(x: f64, y: f64) -> Result<Self> {
        if !((0.0..=1.0).contains(&x) && (0.0..=1.0).contains(&y)) {
            return Err(ImgError::InvalidArgument(format!(
                "focus must be fractions 0..1 of width and height, got ({x}, {y})"
            )));
        }
        Ok(Self { x, y })
    }

    /// The offset of a `window`-long span within `length` that puts `fraction` of the length
    /// as near its middle as the edges allow.
    fn offset(fraction: f64, length: f64, window: f64) -> f64 {
        (fraction * length - window / 2.0).clamp(0.0, (length - window).max(0.0))
    }
}

/// Gives the focal point of a cover crop from its window's width and height (display pixels).
pub type FocusFor<'a> = dyn FnMut(f64, f64) -> Focus + 'a;

fn plan_one(spec: Spec, sw: u32, sh: u32, focus_for: &mut FocusFor<'_>) -> Result<Plan> {
    let full = Crop::full(sw, sh);
    match (spec.width, spec.height) {
        (0, _) | (_, Some(0)) => Err(ImgError::InvalidArgument(format!(
            "invalid rendition {spec:?}"
        ))),
        (w, None) if spec.cover => Err(ImgError::InvalidArgument(format!(
            "cover rendition w{w} needs a height"
        ))),
        (w, None) => {
            let (ow, oh) = if w >= sw {
                (sw, sh)
            } else {
                (w, scaled(sh, w, sw))
            };
            Ok(Plan {
                name: format!("w{ow}"),
                width: ow,
                height: oh,
                crop: full,
            })
        }
        (w, Some(h)) if !spec.cover => {
            // Width-limited when w/sw <= h/sh, compared exactly in integers.
            let (ow, oh) = if u64::from(w) * u64::from(sh) <= u64::from(h) * u64::from(sw) {
                if w >= sw {
                    (sw, sh)
                } else {
                    (w, scaled(sh, w, sw))
                }
            } else if h >= sh {
                (sw, sh)
            } else {
                (scaled(sw, h, sh), h)
            };
            Ok(Plan {
                name: format!("{w}x{h}"),
                width: ow,
                height: oh,
                crop: full,
            })
        }
        (w, Some(h)) => {
            let name = format!("{w}x{h}-cover");
            // The largest box-shaped region of the source, around the focal point.
            let box_wider = u64::from(w) * u64::from(sh) >= u64::from(h) * u64::from(sw);
            let (cw, ch) = if box_wider {
                (f64::from(sw), f64::from(sw) * f64::from(h) / f64::from(w))
            } else {
                (f64::from(sh) * f64::from(w) / f64::from(h), f64::from(sh))
            };
            if f64::from(w) <= cw && f64::from(h) <= ch {
                let focus = focus_for(cw, ch);
                let crop = Crop {
                    left: Focus::offset(focus.x, f64::from(sw), cw),
                    top: Focus::offset(focus.y, f64::from(sh), ch),
                    width: cw,
                    height: ch,
                };
                return Ok(Plan {
                    name,
                    width: w,
                    height: h,
                    crop,
                });
            }
            // The box is larger than the source: a plain crop of the box's aspect ratio at
            // source scale, on whole pixels (floor of the offset) so nothing is resampled or
            // blurred by a half-pixel shift.
            let (ow, oh) = if box_wider {
                (sw, scaled(sw, h, w).min(sh))
            } else {
                (scaled(sh, w, h).min(sw), sh)
            };
            let focus = focus_for(f64::from(ow), f64::from(oh));
            let crop = Crop {
                left: Focus::offset(focus.x, f64::from(sw), f64::from(ow)).floor(),
                top: Focus::offset(focus.y, f64::from(sh), f64::from(oh)).floor(),
                width: f64::from(ow),
                height: f64::from(oh),
            };
            Ok(Plan {
                name,
                width: ow,
                height: oh,
                crop,
            })
        }
    }
}

/// Plans every requested rendition for a display-space source; names repeated after clamping
/// (e.g. two widths above the source width) are produced once, first occurrence first.
pub fn plan(specs: &[Spec], src_w: u32, src_h: u32) -> Result<Vec<Plan>> {
    plan_around(specs, src_w, src_h, Focus::CENTRE)
}

/// `plan` with cover crops around `focus` instead of the centre.
pub fn plan_around(specs: &[Spec], src_w: u32, src_h: u32, focus: Focus) -> Result<Vec<Plan>> {
    plan_with(specs, src_w, src_h, &mut |_, _| focus)
}

/// `plan` with each cover crop around `focus_for(window width, window height)`.
pub fn plan_with(
    specs: &[Spec],
    src_w: u32,
    src_h: u32,
    focus_for: &mut FocusFor<'_>,
) -> Result<Vec<Plan>> {
    let mut out: Vec<Plan> = Vec::with_capacity(specs.len());
    for &spec in specs {
        let p = plan_one(spec, src_w, src_h, focus_for)?;
        if !out.iter().any(|q| q.name == p.name) {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(width: u32, height: Option<u32>, cover: bool) -> Spec {
        Spec {
            width,
            height,
            cover,
        }
    }
    fn dims(p: &Plan) -> (&str, u32, u32) {
        (p.name.as_str(), p.width, p.height)
    }

    #[test]
    fn width_only_never_upscales_and_dedupes() {
        let p = plan(
            &[
                s(640, None, false),
                s(5000, None, false),
                s(4032, None, false),
                s(320, None, false),
            ],
            4032,
            3024,
        )
        .unwrap();
        let d: Vec<_> = p.iter().map(dims).collect();
        assert_eq!(
            d,
            vec![
                ("w640", 640, 480),
                ("w4032", 4032, 3024),
                ("w320", 320, 240)
            ]
        );
    }

    #[test]
    fn rounds_to_nearest_aspect() {
        // 1200 * 1000 / 1800 = 666.67 -> 667
        let p = plan(&[s(1000, None, false)], 1800, 1200).unwrap();
        assert_eq!(dims(&p[0]), ("w1000", 1000, 667));
        let exact = 1000.0 * 1200.0 / 1800.0;
        assert!((f64::from(p[0].height) - exact).abs() <= 0.5);
    }

    #[test]
    fn fit_inside_box() {
        let p = plan(
            &[s(1920, Some(1080), false), s(1080, Some(1920), false)],
            4032,
            3024,
        )
        .unwrap();
        assert_eq!(dims(&p[0]), ("1920x1080", 1440, 1080));
        assert_eq!(dims(&p[1]), ("1080x1920", 1080, 810));
        let big = plan(&[s(9000, Some(9000), false)], 400, 300).unwrap();
        assert_eq!(dims(&big[0]), ("9000x9000", 400, 300));
    }

    #[test]
    fn cover_crops_centred() {
        let p = plan(&[s(1080, Some(1920), true)], 4032, 3024).unwrap();
        assert_eq!(dims(&p[0]), ("1080x1920-cover", 1080, 1920));
        let c = p[0].crop;
        assert_eq!((c.top, c.height), (0.0, 3024.0));
        assert!((c.width - 1701.0).abs() < 1e-9 && (c.left - 1165.5).abs() < 1e-9);
        assert!(!p[0].is_full_frame(4032, 3024));
    }

    #[test]
    fn cover_crops_follow_the_focus_and_stop_at_the_edges() {
        let specs = [s(1000, Some(1000), true), s(4000, Some(4000), true)];
        let left = plan_around(&specs, 3000, 2000, Focus::new(0.0, 0.5).unwrap()).unwrap();
        assert_eq!((left[0].crop.left, left[0].crop.width), (0.0, 2000.0));
        assert_eq!((left[1].crop.left, left[1].crop.width), (0.0, 2000.0));
        let right = plan_around(&specs, 3000, 2000, Focus::new(0.9, 0.5).unwrap()).unwrap();
        assert_eq!(right[0].crop.left, 1000.0); // 2700 - 1000, clamped to 3000 - 2000
        let near = plan_around(&specs, 3000, 2000, Focus::new(0.45, 0.5).unwrap()).unwrap();
        assert_eq!(near[0].crop.left, 350.0); // 1350 - 1000
        assert_eq!(near[1].crop.left, 350.0); // whole pixels at source scale
        let centre = plan(&specs, 3000, 2000).unwrap();
        assert_eq!(centre[0].crop.left, 500.0);
        // Per window: each cover asks for its own focal point with its own window size.
        let mut asked = Vec::new();
        let mut per_window = |w: f64, h: f64| {
            asked.push((w, h));
            Focus::new(if w > h { 1.0 } else { 0.0 }, 0.5).unwrap()
        };
        let both = [s(1000, Some(1000), true), s(3000, Some(1000), true)];
        let p = plan_with(&both, 3000, 2000, &mut per_window).unwrap();
        assert_eq!(asked, [(2000.0, 2000.0), (3000.0, 1000.0)]);
        assert_eq!((p[0].crop.left, p[1].crop.top), (0.0, 500.0));
        assert!(Focus::new(f64::NAN, 0.5).is_err() && Focus::new(0.5, 1.5).is_err());
    }

    #[test]
    fn cover_larger_than_source_keeps_source_scale() {
        let p = plan(
            &[s(1200, Some(600), true), s(900, Some(1000), true)],
            1000,
            800,
        )
        .unwrap();
        assert_eq!(dims(&p[0]), ("1200x600-cover", 1000, 500));
        assert_eq!(
            p[0].crop,
            Crop {
                left: 0.0,
                top: 150.0,
                width: 1000.0,
                height: 500.0
            }
        );
        assert_eq!(dims(&p[1]), ("900x1000-cover", 720, 800));
        assert_eq!(p[1].crop.left, 140.0);
        let odd = plan(&[s(20000, Some(10000), true)], 650, 470).unwrap();
        assert_eq!(dims(&odd[0]), ("20000x10000-cover", 650, 325));
        assert_eq!((odd[0].crop.top, odd[0].crop.height), (72.0, 325.0));
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(plan(&[s(0, None, false)], 10, 10).is_err());
        assert!(plan(&[s(10, Some(0), false)], 10, 10).is_err());
        assert!(plan(&[s(10, None, true)], 10, 10).is_err());
        assert_eq!(
            dims(&plan(&[s(1, None, false)], 10000, 10).unwrap()[0]),
            ("w1", 1, 1)
        );
    }
}
