//! Trellis quantisation (after mozjpeg's `quantize_trellis`): per 8x8 block, the quantised
//! values that minimise `bits + distortion / lambda`, found by dynamic programming over the
//! zigzag positions, with the bits estimated from the image's own symbol statistics.
//!
//! Why a trellis beats rounding: JPEG codes a coefficient as a (zero run, size) Huffman symbol
//! plus `size` raw bits, so the cost of a value depends on where the previous nonzero value
//! sits. Lowering a magnitude to the largest value of a smaller size class, or zeroing it to
//! lengthen a run or end the block early, often saves more bits than the squared error it adds.
//! The state of the trellis is "the last nonzero coefficient is at position j": the cost of
//! everything after j does not depend on j's value, so each position's best value is fixed
//! when the position is reached and the search is exact for the rate model.
//!
//! The rate model is a sequential (baseline) one, though the file is progressive: a symbol's
//! cost is its information content in the image's sequential statistics. Progressive scans
//! code the same runs and sizes split into bands and bit planes, which this approximates well
//! enough to rank the choices. (Scaling the end-of-block cost down, for the end-of-band runs
//! of progressive scans, changed the bytes by under 0.01 %.)

// Positions in zigzag order and symbols are the point of the index loops.
#![allow(clippy::needless_range_loop)]

/// Costs in bits of the sequential Huffman symbols, from their frequencies.
pub(super) struct Rates {
    /// AC (run << 4 | size) symbols; 0x00 is end-of-block, 0xF0 a run of 16 zeros.
    pub ac: [f32; 256],
    /// DC difference size categories 0..=11.
    pub dc: [f32; 12],
}

/// Symbol frequencies of a component class, gathered from a quantisation of its blocks.
pub(super) struct Stats {
    pub ac: [u32; 256],
    pub dc: [u32; 12],
}

impl Stats {
    pub fn new() -> Self {
        Self {
            ac: [0; 256],
            dc: [0; 12],
        }
    }

    /// Counts the AC symbols a sequential scan would code for `b` (zigzag order).
    pub fn add_block(&mut self, b: &[i16; 64]) {
        let mut mask = 0u64;
        for k in 1..64 {
            mask |= u64::from(b[k] != 0) << k;
        }
        let mut prev = 0;
        while mask != 0 {
            let k = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let mut run = k - prev - 1;
            prev = k;
            while run > 15 {
                self.ac[0xF0] += 1;
                run -= 16;
            }
            self.ac[run << 4 | size(i32::from(b[k]))] += 1;
        }
        if prev < 63 {
            self.ac[0] += 1;
        }
    }

    pub fn add_dc_diff(&mut self, diff: i32) {
        self.dc[size(diff).min(11)] += 1;
    }

    pub fn rates(&self) -> Rates {
        Rates {
            ac: entropy(&self.ac),
            dc: entropy(&self.dc),
        }
    }
}

/// Information content of each symbol, in bits. Symbols never seen get the cost of a symbol
/// seen half a time: long (they would get long codes) but not forbidden.
fn entropy<const N: usize>(counts: &[u32; N]) -> [f32; N] {
    let total = counts.iter().map(|&c| f64::from(c)).sum::<f64>().max(1.0);
    counts.map(|c| ((total / f64::from(c).max(0.5)).log2()).min(16.0) as f32)
}

/// Bits of the magnitude category of `v` (T.81's SSSS).
#[inline]
fn size(v: i32) -> usize {
    (32 - v.unsigned_abs().leading_zeros()) as usize
}

/// The per-component constants of the search.
pub(super) struct Trellis {
    /// Weight of a squared error in quantisation steps at each zigzag position, in bits:
    /// `q^2 / lambda` (the distortion is measured in DCT units, which the orthonormal DCT makes
    /// equal to pixel units).
    wq: [f32; 64],
    /// How many of the preceding nonzero positions a value may follow.
    k_pred: usize,
}

impl Trellis {
    /// `table_zz`: the quantisation table in zigzag order; `lambda`: squared DCT-unit error
    /// worth one bit.
    pub fn new(table_zz: &[u16; 64], lambda: f32, k_pred: usize) -> Self {
        Self {
            wq: table_zz.map(|q| f32::from(q) * f32::from(q) / lambda),
            k_pred,
        }
    }

    /// Chooses the AC values of one block. `y`: the unquantised coefficients in quantisation
    /// steps, zigzag order (index 0, the DC, is ignored); `out[1..]` receives the values.
    pub fn quantize_ac(&self, y: &[f32; 64], w: f32, rates: &Rates, out: &mut [i16; 64]) {
        let wq = self.wq.map(|v| v * w);
        // zd[k]: error of zeroing positions 1..=k
        let mut zd = [0f32; 64];
        let mut acc = 0f32;
        for k in 1..64 {
            acc += wq[k] * y[k] * y[k];
            zd[k] = acc;
        }
        // Candidate positions: those that round to nonzero, in order. The start state (no
        // nonzero AC yet) is position 0.
        let mut mask = 0u64;
        for k in 1..64 {
            mask |= u64::from(y[k].abs() >= 0.5) << k;
        }
        if mask == 0 {
            out[1..].fill(0);
            return;
        }
        let mut pos = [0u8; 64];
        let mut m = 1;
        while mask != 0 {
            pos[m] = mask.trailing_zeros() as u8;
            mask &= mask - 1;
            m += 1;
        }
        // g[p]: the best cost up to nonzero position p, less the zeroing error up to it, so
        // that a successor adds only its own terms.
        let mut g = [0f32; 64];
        let mut from = [0u8; 64];
        let mut val = [0i16; 64];
        let r_zrl = rates.ac[0xF0];
        for pi in 1..m {
            let i = usize::from(pos[pi]);
            let a = y[i].abs();
            let r = (a + 0.5) as i32;
            // The rounded value and the largest of the size class below: within a class, bits
            // are equal and the larger value is closer. (mozjpeg tries every smaller class.)
            let nbits = size(r);
            let mut cands = [(0i32, 0usize, 0f32); 2];
            let mut nc = 0;
            for s in nbits.saturating_sub(1).max(1)..=nbits {
                let c = if s < nbits { (1 << s) - 1 } else { r };
                let e = a - c as f32;
                cands[nc] = (c, s, wq[i] * e * e + s as f32);
                nc += 1;
            }
            let mut best = f32::INFINITY;
            let (mut bj, mut bv) = (0usize, 0i32);
            // The start state, then the nearest `k_pred` nonzero positions.
            let first = pi.saturating_sub(self.k_pred).max(1);
            let mut pj = 0;
            loop {
                let run = i - usize::from(pos[pj]) - 1;
                let base = g[pj] + (run >> 4) as f32 * r_zrl;
                let row = (run & 15) << 4;
                for &(c, s, d) in &cands[..nc] {
                    let t = base + rates.ac[row | s] + d;
                    if t < best {
                        best = t;
                        bj = pj;
                        bv = c;
                    }
                }
                pj = if pj == 0 { first } else { pj + 1 };
                if pj >= pi {
                    break;
                }
            }
            g[pi] = best + zd[i - 1] - zd[i];
            from[pi] = bj as u8;
            val[pi] = if y[i] < 0.0 { -bv } else { bv } as i16;
        }
        // Where the block ends: after the last nonzero, an end-of-block unless at 63.
        let r_eob = rates.ac[0];
        let mut best = r_eob;
        let mut last = 0;
        for pi in 1..m {
            let t = g[pi] + if pos[pi] < 63 { r_eob } else { 0.0 };
            if t < best {
                best = t;
                last = pi;
            }
        }
        out[1..].fill(0);
        let mut pi = last;
        while pi != 0 {
            out[usize::from(pos[pi])] = val[pi];
            pi = usize::from(from[pi]);
        }
    }

    /// Chooses the DC values of a component's blocks in coding order (each coded as the
    /// difference from the previous one): a Viterbi search over rounding down, to nearest and
    /// up. `y`: unquantised DC values in quantisation steps; returns the values.
    pub fn quantize_dc(&self, y: &[f32], rates: &Rates) -> Vec<i16> {
        const C: usize = 3;
        let n = y.len();
        let mut back = vec![[0u8; C]; n];
        let mut prev_cost = [0f32; C];
        let mut prev_val = [0i32; C];
        let w = self.wq[0];
        let round = |v: f32| (v + 0.5f32.copysign(v)) as i32;
        for (bi, &v) in y.iter().enumerate() {
            let r = round(v);
            let mut cost = [0f32; C];
            let mut vals = [0i32; C];
            for k in 0..C {
                let c = r + k as i32 - 1;
                let e = v - c as f32;
                let d = w * e * e;
                vals[k] = c;
                if bi == 0 {
                    let s = size(c);
                    cost[k] = d + rates.dc[s.min(11)] + s as f32;
                    continue;
                }
                let mut best = f32::INFINITY;
                for l in 0..C {
                    let s = size(c - prev_val[l]);
                    let t = prev_cost[l] + rates.dc[s.min(11)] + s as f32;
                    if t < best {
                        best = t;
                        back[bi][k] = l as u8;
                    }
                }
                cost[k] = best + d;
            }
            prev_cost = cost;
            prev_val = vals;
        }
        let mut out = vec![0i16; n];
        let mut k = (0..C)
            .min_by(|&a, &b| prev_cost[a].total_cmp(&prev_cost[b]))
            .unwrap_or(1);
        for bi in (0..n).rev() {
            out[bi] = (round(y[bi]) + k as i32 - 1) as i16;
            k = usize::from(back[bi][k]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bits plus weighted error of a block's AC values under the sequential model.
    fn cost(t: &Trellis, y: &[f32; 64], v: &[i16; 64], r: &Rates) -> f32 {
        let mut c = 0f32;
        let mut run = 0usize;
        for k in 1..64 {
            let e = y[k] - f32::from(v[k]);
            c += t.wq[k] * e * e;
            if v[k] == 0 {
                run += 1;
                continue;
            }
            while run > 15 {
                c += r.ac[0xF0];
                run -= 16;
            }
            let s = size(i32::from(v[k]));
            c += r.ac[run << 4 | s] + s as f32;
            run = 0;
        }
        if run > 0 {
            c += r.ac[0];
        }
        c
    }

    /// A deterministic pseudo-random block decaying with frequency, like a photo's.
    fn block(seed: u32) -> [f32; 64] {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut y = [0f32; 64];
        for k in 0..64 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let u = (s % 20_001) as f32 / 10_000.0 - 1.0;
            y[k] = u * 12.0 / (1.0 + k as f32 * 0.4);
        }
        y
    }

    #[test]
    fn never_costs_more_than_rounding() {
        let mut st = Stats::new();
        let blocks: Vec<[f32; 64]> = (0..200).map(block).collect();
        for y in &blocks {
            st.add_block(&y.map(|v| v.round() as i16));
        }
        let r = st.rates();
        let mut table = [0u16; 64];
        for (k, q) in table.iter_mut().enumerate() {
            *q = 4 + k as u16;
        }
        for lambda in [2.0, 10.0, 50.0] {
            let t = Trellis::new(&table, lambda, 64);
            let mut gain = 0f32;
            for y in &blocks {
                let rounded = y.map(|v| v.round() as i16);
                let mut ours = [0i16; 64];
                t.quantize_ac(y, 1.0, &r, &mut ours);
                let (a, b) = (cost(&t, y, &ours, &r), cost(&t, y, &rounded, &r));
                assert!(a <= b + 1e-3, "lambda {lambda}: trellis {a} > rounding {b}");
                gain += b - a;
            }
            assert!(gain > 0.0);
        }
    }

    #[test]
    fn dc_search_never_costs_more_than_rounding() {
        let mut st = Stats::new();
        let y: Vec<f32> = (0..300)
            .map(|i| 40.0 * ((i as f32) * 0.05).sin() + (i % 7) as f32 * 0.3)
            .collect();
        let mut prev = 0;
        for &v in &y {
            let r = v.round() as i32;
            st.add_dc_diff(r - prev);
            prev = r;
        }
        let rates = st.rates();
        let t = Trellis::new(&[8; 64], 30.0, 64);
        let total = |vals: &[i32]| {
            let mut c = 0f32;
            let mut prev = 0;
            for (&v, &x) in vals.iter().zip(&y) {
                let s = size(v - prev);
                let e = x - v as f32;
                c += rates.dc[s] + s as f32 + t.wq[0] * e * e;
                prev = v;
            }
            c
        };
        let ours: Vec<i32> = t
            .quantize_dc(&y, &rates)
            .iter()
            .map(|&v| i32::from(v))
            .collect();
        let rounded: Vec<i32> = y.iter().map(|v| v.round() as i32).collect();
        assert!(total(&ours) <= total(&rounded) + 1e-3);
    }
}
