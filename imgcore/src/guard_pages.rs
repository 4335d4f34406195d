//! The SIMD kernels and the libwebp calls with every buffer they are given or make placed
//! against an inaccessible page, once after its end and once before its start, in poisoned
//! memory (`alloc::guard`): one byte read or written outside a buffer faults, and an output
//! byte no kernel wrote shows as poison instead of as the last image's pixels.

use fast_image_resize::Resizer;

use crate::alloc::guard::{with_guards, Placement, POISON};
use crate::error::ImgError;
use crate::image::Pixels;
use crate::rendition::{self, Crop, Spec};
use crate::resize::{self, weights};
use crate::{encode, orient};

const PLACEMENTS: [Placement; 2] = [Placement::End, Placement::Start];

/// xorshift32: the same cases on every run.
struct Rng(u32);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0 % n.max(1)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.below(256) as u8).collect()
    }
}

/// Source sizes: every width from 1 to 300, each with a height that sweeps 1..=300 too.
fn sizes() -> impl Iterator<Item = (u32, u32)> {
    (1..=300u32).map(|w| (w, 1 + (w * 97 + 31) % 300))
}

/// `bytes` in a buffer of exactly their length, allocated where the caller's guard mode
/// places it.
fn placed(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    v
}

fn image(width: u32, height: u32, channels: usize, data: &[u8]) -> Pixels {
    Pixels {
        width,
        height,
        channels,
        data: placed(data),
    }
}

/// Resize cases for a `sw` x `sh` source: the whole frame, a fractional crop, and a cover
/// crop as the rendition planner makes it, each to a size the kernels take (a downscale by
/// at most 4x or an upscale) or not.
fn resize_cases(rng: &mut Rng, sw: u32, sh: u32) -> Vec<(Crop, u32, u32)> {
    let target = |rng: &mut Rng, w: f64, h: f64| {
        let shrink = 1.0 + f64::from(rng.below(100)) / 20.0;
        let grow = 1.0 + f64::from(rng.below(100)) / 50.0;
        let s = if rng.below(4) == 0 {
            grow
        } else {
            1.0 / shrink
        };
        (((w * s) as u32).max(1), ((h * s) as u32).max(1))
    };
    let (fw, fh) = (f64::from(sw), f64::from(sh));
    let (tw, th) = target(rng, fw, fh);
    let left = f64::from(rng.below(sw * 4)) / 8.0;
    let top = f64::from(rng.below(sh * 4)) / 8.0;
    let fractional = Crop {
        left,
        top,
        width: (fw - left) * f64::from(1 + rng.below(8)) / 8.0,
        height: (fh - top) * f64::from(1 + rng.below(8)) / 8.0,
    };
    let (cw, ch) = target(rng, fractional.width, fractional.height);
    let cover = Spec {
        width: 1 + rng.below(sw),
        height: Some(1 + rng.below(sh)),
        cover: true,
    };
    let plan = rendition::plan(&[cover], sw, sh).expect("a valid cover spec");
    vec![
        (Crop::full(sw, sh), tw, th),
        (fractional, cw, ch),
        (plan[0].crop, plan[0].width, plan[0].height),
    ]
}

#[test]
fn resize_kernels_match_the_portable_path_against_guard_pages() {
    let mut rng = Rng(0x2545_F491);
    let mut kernel_runs = 0;
    let mut cases = 0;
    for (sw, sh) in sizes() {
        let data = rng.bytes((sw * sh * 3) as usize);
        for (crop, w, h) in resize_cases(&mut rng, sw, sh) {
            let src = image(sw, sh, 3, &data);
            let want = resize::resize_with(&mut Resizer::new(), &src, crop, w, h)
                .unwrap_or_else(|e| panic!("{sw}x{sh} {crop:?} -> {w}x{h}: {e}"));
            for placement in PLACEMENTS {
                let got = with_guards(placement, || {
                    let src = image(sw, sh, 3, &data);
                    match resize::resize_simd(&src, crop, w, h) {
                        Some(out) => Some(out),
                        None => resize::resize(&mut Resizer::new(), &src, crop, w, h).ok(),
                    }
                });
                let got = got.unwrap_or_else(|| panic!("{sw}x{sh} {crop:?} -> {w}x{h} failed"));
                assert!(
                    got.data == want.data,
                    "{sw}x{sh} {crop:?} -> {w}x{h} ({placement:?}): differs from the portable path"
                );
            }
            kernel_runs += usize::from(resize::resize_simd(&src, crop, w, h).is_some());
            cases += 1;
        }
    }
    // The kernels take downscales by up to about 4x and upscales: most cases here.
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512vbmi") && is_x86_feature_detected!("avx512vnni") {
        assert!(
            kernel_runs * 2 > cases,
            "{kernel_runs} of {cases} ran the kernels"
        );
    }
}

/// Display pixel (x, y) is stored pixel `a + x * dx + y * dy`: the orientations as index
/// arithmetic, with nothing shared with the code under test.
fn oriented_reference(px: &[u8], w: usize, h: usize, n: usize, o: u8) -> Vec<u8> {
    let (wi, hi) = (w as isize, h as isize);
    let (a, dx, dy) = match o {
        2 => (wi - 1, -1, wi),
        3 => (hi * wi - 1, -1, -wi),
        4 => ((hi - 1) * wi, 1, -wi),
        5 => (0, wi, 1),
        6 => ((hi - 1) * wi, -wi, 1),
        7 => ((hi - 1) * wi + wi - 1, -wi, -1),
        8 => (wi - 1, wi, -1),
        _ => (0, 1, wi),
    };
    let (dw, dh) = if o >= 5 { (h, w) } else { (w, h) };
    let mut out = Vec::with_capacity(px.len());
    for y in 0..dh as isize {
        for x in 0..dw as isize {
            let i = (a + x * dx + y * dy) as usize * n;
            out.extend_from_slice(&px[i..i + n]);
        }
    }
    out
}

#[test]
fn orientation_kernels_match_the_reference_against_guard_pages() {
    let mut rng = Rng(0x9E37_79B9);
    for (sw, sh) in sizes() {
        for n in [1usize, 3, 4] {
            let px = rng.bytes(sw as usize * sh as usize * n);
            for o in 1..=8u8 {
                let want = oriented_reference(&px, sw as usize, sh as usize, n, o);
                for placement in PLACEMENTS {
                    let (got, w, h) =
                        with_guards(placement, || orient::apply(placed(&px), sw, sh, n, o));
                    assert_eq!((w, h), orient::oriented_size(sw, sh, o));
                    assert!(
                        got == want,
                        "{sw}x{sh}x{n} orientation {o} ({placement:?}) differs"
                    );
                }
            }
        }
    }
}

fn poison_share(data: &[u8]) -> String {
    let poisoned = data.iter().filter(|&&b| b == POISON).count();
    format!("{poisoned} of {} bytes are poison", data.len())
}

/// Issue 17, item 1: a horizontal pass without windows wrote nothing, and the output
/// exposed its buffer anyway.
#[test]
fn a_resize_with_no_source_columns_is_refused_not_exposed() {
    let data: Vec<u8> = (0..40 * 30 * 3).map(|i| (i % 251) as u8).collect();
    let crop = |left, width| Crop {
        left,
        top: 0.0,
        width,
        height: 30.0,
    };
    for placement in PLACEMENTS {
        with_guards(placement, || {
            let cases = [
                (image(40, 30, 3, &data), crop(5.0, 0.0)),
                (image(40, 30, 3, &data), crop(5.0, -3.0)),
                (image(0, 30, 3, &[]), crop(0.0, 0.0)),
            ];
            for (src, crop) in cases {
                if let Some(out) = resize::resize_simd(&src, crop, 20, 15) {
                    panic!(
                        "{crop:?} of {}x30 gave an image: {}",
                        src.width,
                        poison_share(&out.data)
                    );
                }
                let res = resize::resize(&mut Resizer::new(), &src, crop, 20, 15);
                assert!(
                    matches!(res, Err(ImgError::InvalidArgument(_))),
                    "{crop:?} of {}x30: {res:?}",
                    src.width
                );
            }
        });
    }
}

/// Issue 17, item 5: a crop past the image's edge underflowed a window's length.
#[test]
fn crops_outside_the_image_are_refused() {
    let data: Vec<u8> = (0..100 * 50 * 3).map(|i| (i % 253) as u8).collect();
    let outside = [
        Crop {
            left: 150.0,
            top: 0.0,
            width: 10.0,
            height: 50.0,
        },
        Crop {
            left: 90.0,
            top: 0.0,
            width: 20.0,
            height: 50.0,
        },
        Crop {
            left: 0.0,
            top: 45.0,
            width: 100.0,
            height: 10.0,
        },
        Crop {
            left: -5.0,
            top: 0.0,
            width: 50.0,
            height: 50.0,
        },
        Crop {
            left: f64::NAN,
            top: 0.0,
            width: 50.0,
            height: 50.0,
        },
        Crop {
            left: 0.0,
            top: 0.0,
            width: f64::INFINITY,
            height: 50.0,
        },
    ];
    for placement in PLACEMENTS {
        with_guards(placement, || {
            for crop in outside {
                let src = image(100, 50, 3, &data);
                let pass = weights::pass(
                    100,
                    crop.left,
                    crop.left + crop.width,
                    10,
                    resize::lanczos3,
                    resize::SUPPORT,
                );
                assert!(
                    pass.windows
                        .iter()
                        .all(|w| w.start as usize + w.weights.len() <= 100),
                    "{crop:?}: a window leaves the axis"
                );
                if let Some(out) = resize::resize_simd(&src, crop, 10, 5) {
                    panic!("{crop:?} gave an image: {}", poison_share(&out.data));
                }
                let res = resize::resize(&mut Resizer::new(), &src, crop, 10, 5);
                assert!(
                    matches!(res, Err(ImgError::InvalidArgument(_))),
                    "{crop:?}: {res:?}"
                );
            }
        });
    }
}

/// libwebp's SIMD colour conversion reads rows in blocks of pixels: every width up to a few
/// blocks, against both ends, stays inside the buffer.
#[test]
fn webp_reads_only_the_pixels_it_is_given() {
    let mut rng = Rng(0x1234_5678);
    for width in 1..=40u32 {
        for height in [1u32, 2, 7] {
            for channels in [3usize, 4] {
                let data = rng.bytes(width as usize * height as usize * channels);
                for placement in PLACEMENTS {
                    let out = with_guards(placement, || {
                        encode::webp(&image(width, height, channels, &data), 80.0, 4)
                    });
                    let out = out.unwrap_or_else(|e| panic!("{width}x{height}x{channels}: {e}"));
                    assert_eq!(&out[8..12], b"WEBP");
                }
            }
        }
    }
}

/// Issue 17, item 2: the encoders trusted the pixel buffer to hold the whole image.
#[test]
fn encoders_refuse_buffers_shorter_than_the_image() {
    let (w, h) = (17u32, 9u32);
    for placement in PLACEMENTS {
        with_guards(placement, || {
            for channels in [3usize, 4] {
                let full: Vec<u8> = (0..w as usize * h as usize * channels)
                    .map(|i| (i * 7 % 256) as u8)
                    .collect();
                let whole = image(w, h, channels, &full);
                let webp = encode::webp(&whole, 80.0, 4).expect("a whole image encodes");
                assert_eq!(&webp[..4], b"RIFF");
                assert!(encode::jpeg(&whole, 82).is_ok());
                for short in [1, w as usize * channels, full.len()] {
                    let cut = image(w, h, channels, &full[..full.len() - short]);
                    let res = encode::webp(&cut, 80.0, 4);
                    assert!(res.is_err(), "WebP of {short} bytes short: {res:?}");
                    let res = encode::jpeg(&cut, 82);
                    assert!(res.is_err(), "JPEG of {short} bytes short: {res:?}");
                }
            }
            for channels in [1usize, 2, 5] {
                let data = vec![128u8; w as usize * h as usize * channels];
                let odd = image(w, h, channels, &data);
                for res in [encode::webp(&odd, 80.0, 4), encode::jpeg(&odd, 82)] {
                    match res {
                        Err(e) => assert!(e.to_string().contains("channel"), "{channels}: {e}"),
                        Ok(_) => panic!("{channels}-channel pixels encoded"),
                    }
                }
            }
            for (ew, eh) in [(0, 9), (17, 0)] {
                let empty = image(ew, eh, 3, &[]);
                assert!(encode::webp(&empty, 80.0, 4).is_err(), "{ew}x{eh}");
                assert!(encode::jpeg(&empty, 82).is_err(), "{ew}x{eh}");
            }
        });
    }
}
