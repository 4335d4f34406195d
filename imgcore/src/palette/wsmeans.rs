//! Weighted k-means in L*a*b* ("WSMeans"), refining Wu's clusters as upstream's C++
//! `wsmeans.cc` does, including its quirks: points start in pseudo-random clusters drawn
//! from glibc's `rand()` seeded with 42688, and a point only changes cluster when that
//! brings it more than 3 ΔE closer. Both shape the result, so both are reproduced.

use super::lab::{Argb, Lab};

const MAX_ITERATIONS: usize = 100;
const MIN_DELTA_E: f64 = 3.0;
const UPSTREAM_SEED: u32 = 42688;

/// How points are assigned before the first iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// Upstream's pseudo-random assignment: needed to reproduce its seed colour.
    Upstream,
    /// Each point in its nearest starting cluster: plain k-means, for the dominant colours.
    Nearest,
}

/// glibc's `random()` (TYPE_3 additive feedback generator), which backs `rand()` on the
/// Linux builds of the reference.
struct GlibcRand {
    r: [u32; 34],
    pos: usize,
}

impl GlibcRand {
    fn new(seed: u32) -> GlibcRand {
        let mut r = [0u32; 34];
        r[0] = if seed == 0 { 1 } else { seed };
        for i in 1..31 {
            // 16807 * r mod (2^31 - 1) via Schrage's method, on glibc's signed 32-bit words.
            let prev = r[i - 1] as i32;
            let (hi, lo) = (prev / 127_773, prev % 127_773);
            let mut word = 16_807i32
                .wrapping_mul(lo)
                .wrapping_sub(2_836i32.wrapping_mul(hi));
            if word < 0 {
                word = word.wrapping_add(2_147_483_647);
            }
            r[i] = word as u32;
        }
        for i in 31..34 {
            r[i] = r[i - 31];
        }
        let mut rng = GlibcRand { r, pos: 0 };
        for _ in 34..344 {
            rng.step();
        }
        rng
    }

    /// Ring buffer over the last 34 outputs of r[i] = r[i-31] + r[i-3].
    fn step(&mut self) -> u32 {
        let i = self.pos;
        let v = self.r[(i + 3) % 34].wrapping_add(self.r[(i + 31) % 34]);
        self.r[i] = v;
        self.pos = (i + 1) % 34;
        v
    }

    fn next(&mut self) -> u32 {
        self.step() >> 1
    }
}

/// Refines `starting` clusters over the distinct colours `points` (weighted by `counts`).
/// Returns each non-empty cluster's colour with its pixel count, merged when two clusters
/// round to the same sRGB colour, in cluster order.
pub fn quantize(
    points: &[Lab],
    counts: &[u32],
    starting: &[Argb],
    max_colors: usize,
    start: Start,
) -> Vec<(Argb, u32)> {
    let cluster_count = max_colors.min(points.len()).min(starting.len()).min(256);
    if cluster_count == 0 || counts.len() != points.len() {
        return Vec::new();
    }
    let mut clusters: Vec<Lab> = starting[..cluster_count]
        .iter()
        .map(|&c| Lab::from_argb(c))
        .collect();

    let mut assignment: Vec<usize> = match start {
        Start::Upstream => {
            let mut rng = GlibcRand::new(UPSTREAM_SEED);
            points
                .iter()
                .map(|_| rng.next() as usize % cluster_count)
                .collect()
        }
        Start::Nearest => points.iter().map(|p| nearest(p, &clusters)).collect(),
    };

    let n = cluster_count;
    let mut distances = vec![0.0f64; n * n];
    // Per cluster, the other clusters by increasing distance: a point only needs to look at
    // clusters closer to its current one than twice its own distance (triangle inequality),
    // which upstream checks for all clusters and this walks in order until the bound.
    let mut neighbours: Vec<(f64, u16)> = vec![(0.0, 0); n * n];
    let mut populations = vec![0u64; n];

    for iteration in 0..MAX_ITERATIONS {
        for i in 0..n {
            distances[i * n + i] = 0.0;
            for j in i + 1..n {
                let d = clusters[i].delta_e(&clusters[j]);
                distances[i * n + j] = d;
                distances[j * n + i] = d;
            }
        }
        for i in 0..n {
            let row = &mut neighbours[i * n..(i + 1) * n];
            for (j, slot) in row.iter_mut().enumerate() {
                *slot = (distances[i * n + j], j as u16);
            }
            row.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        }

        let mut moved = false;
        for (point, cluster) in points.iter().zip(assignment.iter_mut()) {
            let previous = *cluster;
            let previous_distance = point.delta_e(&clusters[previous]);
            let limit = 4.0 * previous_distance;
            let mut minimum = previous_distance;
            let mut best: Option<usize> = None;
            for &(to_previous, j) in &neighbours[previous * n..(previous + 1) * n] {
                if to_previous >= limit {
                    break;
                }
                let j = usize::from(j);
                let d = point.delta_e(&clusters[j]);
                // Upstream scans clusters by index with a strict `<`, so among equally
                // near clusters the lowest index wins; keep that despite the sorted walk.
                if d < minimum || (d == minimum && best.is_some_and(|b| j < b)) {
                    minimum = d;
                    best = Some(j);
                }
            }
            if let Some(best) = best {
                if (minimum.sqrt() - previous_distance.sqrt()).abs() > MIN_DELTA_E {
                    moved = true;
                    *cluster = best;
                }
            }
        }
        if !moved && iteration != 0 {
            break;
        }

        let mut sums = vec![[0.0f64; 3]; n];
        populations.iter_mut().for_each(|p| *p = 0);
        for ((point, &cluster), &count) in points.iter().zip(&assignment).zip(counts) {
            populations[cluster] += u64::from(count);
            let w = f64::from(count);
            sums[cluster][0] += point.l * w;
            sums[cluster][1] += point.a * w;
            sums[cluster][2] += point.b * w;
        }
        for ((cluster, sum), &population) in clusters.iter_mut().zip(&sums).zip(&populations) {
            *cluster = if population == 0 {
                // Upstream parks empty clusters at black rather than dropping them.
                Lab::default()
            } else {
                let p = population as f64;
                Lab {
                    l: sum[0] / p,
                    a: sum[1] / p,
                    b: sum[2] / p,
                }
            };
        }
    }

    let mut swatches: Vec<(Argb, u32)> = Vec::new();
    for (cluster, &population) in clusters.iter().zip(&populations) {
        if population == 0 {
            continue;
        }
        let argb = cluster.to_argb();
        let population = u32::try_from(population).unwrap_or(u32::MAX);
        match swatches.iter_mut().find(|s| s.0 == argb) {
            Some(s) => s.1 = s.1.saturating_add(population),
            None => swatches.push((argb, population)),
        }
    }
    swatches
}

fn nearest(point: &Lab, clusters: &[Lab]) -> usize {
    let mut best = 0;
    let mut best_distance = f64::INFINITY;
    for (j, c) in clusters.iter().enumerate() {
        let d = point.delta_e(c);
        if d < best_distance {
            best_distance = d;
            best = j;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rand_matches_glibc() {
        // First outputs of `srand(42688); rand()` with glibc.
        let mut rng = GlibcRand::new(42688);
        let got: Vec<u32> = (0..5).map(|_| rng.next()).collect();
        assert_eq!(
            got,
            vec![1057348992, 762201445, 1956717003, 540228760, 637815880]
        );
        // The textbook check: glibc's srand(1) sequence.
        let mut rng = GlibcRand::new(1);
        assert_eq!(rng.next(), 1804289383);
        assert_eq!(rng.next(), 846930886);
    }

    #[test]
    fn separates_two_colours() {
        let colors = [0xFFFF_0000u32, 0xFF00_00FF];
        let points: Vec<Lab> = colors.iter().map(|&c| Lab::from_argb(c)).collect();
        for start in [Start::Upstream, Start::Nearest] {
            let mut out = quantize(&points, &[30, 10], &colors, 128, start);
            out.sort_unstable();
            assert_eq!(out, vec![(0xFF00_00FF, 10), (0xFFFF_0000, 30)], "{start:?}");
        }
    }

    #[test]
    fn empty_inputs_give_nothing() {
        assert!(quantize(&[], &[], &[0xFF00_0000], 128, Start::Upstream).is_empty());
        let p = [Lab::default()];
        assert!(quantize(&p, &[1], &[], 128, Start::Upstream).is_empty());
        assert!(quantize(&p, &[1], &[0xFF00_0000], 0, Start::Nearest).is_empty());
    }
}
