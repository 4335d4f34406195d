//! Convolution weights of one resampling pass, computed exactly as fast_image_resize computes
//! them (same windows, same f64 operations in the same order, same fixed-point rounding), so
//! that the SIMD passes in `avx512` produce the same bytes as the resizer they stand in for.

/// Fixed-point coefficients are i16; results need 8 bits plus two of headroom for the
/// filter's negative lobes, so a sum of products fits an i32.
const MAX_PRECISION: u32 = 22;
const COEFFICIENT_BITS: u32 = 15;

/// The source range read for one output sample and its fixed-point weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start: u32,
    pub weights: Vec<i16>,
}

/// The weights of one axis: one window per output sample, scaled by `2^precision`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub precision: u32,
    pub windows: Vec<Window>,
}

impl Pass {
    /// The longest window.
    pub fn taps(&self) -> usize {
        self.windows
            .iter()
            .map(|w| w.weights.len())
            .max()
            .unwrap_or(0)
    }

    /// First source sample any window reads and one past the last.
    pub fn span(&self) -> (u32, u32) {
        let first = self.windows.iter().map(|w| w.start).min().unwrap_or(0);
        let end = self
            .windows
            .iter()
            .map(|w| w.start + w.weights.len() as u32)
            .max()
            .unwrap_or(first);
        (first, end)
    }
}

/// Whether an axis of `in_size` cropped to `[in0, in0 + len)` needs resampling to reach
/// `out_size` samples (a whole-sample crop of the same length is a plain copy).
pub fn needed(in0: f64, len: f64, out_size: u32) -> bool {
    f64::from(out_size) != len || in0 != in0.round()
}

/// Weights resampling `[in0, in1)` of an axis of `in_size` samples to `out_size` samples with
/// `kernel` of half-width `support`, widened by the scale when downsampling; no windows when
/// the range is empty or not inside the axis.
pub fn pass(
    in_size: u32,
    in0: f64,
    in1: f64,
    out_size: u32,
    kernel: fn(f64) -> f64,
    support: f64,
) -> Pass {
    let scale = (in1 - in0) / f64::from(out_size);
    // Also refuses NaN: every comparison with it fails.
    let inside = in0 >= 0.0 && in1 <= f64::from(in_size) && scale > 0.0 && scale.is_finite();
    if !inside || out_size == 0 {
        return Pass {
            precision: 0,
            windows: Vec::new(),
        };
    }
    let kernel_scale = scale.max(1.0);
    let radius = support * kernel_scale;
    let inverse = 1.0 / kernel_scale;

    let mut memo = Memo::new(kernel);
    let mut windows = Vec::with_capacity(out_size as usize);
    let mut largest = 0.0f64;
    for out in 0..out_size {
        let centre = in0 + (f64::from(out) + 0.5) * scale;
        let lo = (centre - radius).floor().max(0.0) as u32;
        let hi = (centre + radius).ceil().min(f64::from(in_size)) as u32;
        let pixel_centre = centre - 0.5;
        let mut start = lo;
        // The centre lies inside the axis, so lo <= hi; saturating keeps that a fact here.
        let mut values: Vec<f64> = Vec::with_capacity(hi.saturating_sub(lo) as usize);
        for x in lo..hi {
            let w = memo.value((f64::from(x) - pixel_centre) * inverse);
            // Leading zero weights move the window's start instead of being read.
            if x == start && w == 0.0 {
                start += 1;
            } else {
                values.push(w);
            }
        }
        let sum: f64 = values.iter().fold(0.0, |acc, &w| acc + w);
        if sum != 0.0 {
            values.iter_mut().for_each(|w| *w /= sum);
        }
        while values.last() == Some(&0.0) {
            values.pop();
        }
        largest = values.iter().fold(largest, |m, &w| m.max(w));
        windows.push((start, values));
    }

    // The largest precision whose biggest weight still fits an i16 once rounded.
    let mut precision = 0;
    for p in 0..MAX_PRECISION {
        precision = p;
        let next = (largest * f64::from(1u32 << (p + 1))).round();
        if next >= f64::from(1u32 << COEFFICIENT_BITS) {
            break;
        }
    }
    let unit = f64::from(1u32 << precision);
    Pass {
        precision,
        windows: windows
            .into_iter()
            .map(|(start, values)| Window {
                start,
                weights: values.iter().map(|&w| (w * unit).round() as i16).collect(),
            })
            .collect(),
    }
}

/// Kernel values by argument. When the scale is exact in binary (1800 -> 1280 is 45/32, the
/// halvings of a chain are 2) the same arguments recur every few outputs, and each value
/// found here saves a `sin` (the renditions of a 1800x1200 photo: 2.85 -> 2.65 ms). The
/// kernel is a pure function, so the weights are unchanged.
struct Memo {
    kernel: fn(f64) -> f64,
    keys: Vec<u64>,
    values: Vec<f64>,
}

impl Memo {
    const BITS: u32 = 10;

    fn new(kernel: fn(f64) -> f64) -> Memo {
        // All-ones is a NaN, never the bits of a (finite) argument.
        Memo {
            kernel,
            keys: vec![u64::MAX; 1 << Self::BITS],
            values: vec![0.0; 1 << Self::BITS],
        }
    }

    fn value(&mut self, arg: f64) -> f64 {
        let bits = arg.to_bits();
        let slot = (bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - Self::BITS)) as usize;
        if self.keys[slot] != bits {
            self.keys[slot] = bits;
            self.values[slot] = (self.kernel)(arg);
        }
        self.values[slot]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triangle(x: f64) -> f64 {
        (1.0 - x.abs()).max(0.0)
    }

    #[test]
    fn windows_stay_inside_the_axis_and_weights_sum_to_one() {
        for (in_size, out_size) in [(100u32, 37u32), (37, 100), (4032, 3840), (7, 1), (1, 5)] {
            let p = pass(in_size, 0.0, f64::from(in_size), out_size, triangle, 1.0);
            assert_eq!(p.windows.len(), out_size as usize);
            let one = 1i32 << p.precision;
            for w in &p.windows {
                assert!(w.start + w.weights.len() as u32 <= in_size);
                let sum: i32 = w.weights.iter().map(|&v| i32::from(v)).sum();
                // Each weight is rounded on its own: the sum is off by at most half a unit
                // per tap.
                assert!(
                    (sum - one).abs() <= w.weights.len() as i32,
                    "{sum} vs {one}"
                );
            }
        }
    }

    #[test]
    fn precision_uses_the_i16_range_without_overflowing_it() {
        let p = pass(4032, 0.0, 4032.0, 1920, triangle, 1.0);
        let max = p
            .windows
            .iter()
            .flat_map(|w| w.weights.iter().copied())
            .max()
            .unwrap();
        assert!(max > i16::MAX / 2, "{max} at precision {}", p.precision);
    }

    #[test]
    fn crops_read_only_their_neighbourhood() {
        let p = pass(1000, 400.0, 600.0, 100, triangle, 1.0);
        let (first, end) = p.span();
        assert!((398..=400).contains(&first), "{first}");
        assert!((600..=602).contains(&end), "{end}");
        assert!(needed(400.0, 200.0, 100));
        assert!(!needed(400.0, 200.0, 200));
        assert!(needed(400.5, 200.0, 200));
    }
}
