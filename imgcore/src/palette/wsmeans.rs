//! Weighted k-means in L*a*b* ("WSMeans"), refining Wu's clusters as upstream's C++
//! `wsmeans.cc` does, including its quirks: points start in pseudo-random clusters drawn
//! from glibc's `rand()` seeded with 42688, and a point only changes cluster when that
//! brings it more than 3 ΔE closer. Both shape the result, so both are reproduced.

use super::lab::{Argb, Lab};

const UPSTREAM_MAX_ITERATIONS: usize = 100;
const MIN_DELTA_E: f64 = 3.0;
const UPSTREAM_SEED: u32 = 42688;

/// How points are assigned before the first iteration, and how long to iterate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Upstream's pseudo-random start and 100-iteration cap: needed to reproduce its seed.
    Upstream,
    /// Each point starts in its nearest cluster: plain weighted k-means, for the dominant
    /// colours. The cap matters on noise-like images, where the 3 ΔE move threshold lets
    /// points trade places between big clusters for all 100 rounds.
    Nearest { max_iterations: usize },
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
/// `guesses` may name a likely-nearest starting cluster per point (Wu's box of the colour):
/// it only speeds up the first nearest-cluster search, never changes the result.
/// Returns each non-empty cluster's colour with its pixel count, merged when two clusters
/// round to the same sRGB colour, in cluster order.
pub fn quantize(
    points: &[Lab],
    counts: &[u32],
    guesses: &[usize],
    starting: &[Argb],
    max_colors: usize,
    mode: Mode,
) -> Vec<(Argb, u32)> {
    let cluster_count = max_colors.min(points.len()).min(starting.len()).min(256);
    if cluster_count == 0 || counts.len() != points.len() {
        return Vec::new();
    }
    let mut clusters: Vec<Lab> = starting[..cluster_count]
        .iter()
        .map(|&c| Lab::from_argb(c))
        .collect();

    let (mut assignment, max_iterations): (Vec<usize>, usize) = match mode {
        Mode::Upstream => {
            let mut rng = GlibcRand::new(UPSTREAM_SEED);
            let start = points.iter().map(|_| rng.next() as usize % cluster_count);
            (start.collect(), UPSTREAM_MAX_ITERATIONS)
        }
        Mode::Nearest { max_iterations } => {
            let start = points.iter().map(|p| nearest(p, &clusters));
            (start.collect(), max_iterations)
        }
    };

    let n = cluster_count;
    // Distances between clusters (ΔE, not squared), and each cluster's neighbours by
    // increasing distance, packed as (f32 distance bits, index) so a row sorts as plain
    // integers (non-negative floats order like their bits).
    let mut distances = vec![0.0f64; n * n];
    let mut neighbours: Vec<u64> = vec![0; n * n];
    let mut searches: Vec<Search> = (0..points.len())
        .map(|i| Search {
            nearest: guesses.get(i).copied().filter(|&g| g < n).unwrap_or(0),
            upper: f64::INFINITY,
            lower: f64::NEG_INFINITY,
        })
        .collect();
    let mut populations = vec![0u64; n];

    for iteration in 0..max_iterations {
        for i in 0..n {
            distances[i * n + i] = 0.0;
            for j in i + 1..n {
                let d = clusters[i].delta_e(&clusters[j]).sqrt();
                distances[i * n + j] = d;
                distances[j * n + i] = d;
            }
        }
        for (i, row) in neighbours.chunks_exact_mut(n).enumerate() {
            let distances = &distances[i * n..(i + 1) * n];
            if iteration == 0 {
                for (j, slot) in row.iter_mut().enumerate() {
                    *slot = neighbour_key(distances[j], j);
                }
                row.sort_unstable();
            } else {
                // Clusters move little between rounds, so last round's order is nearly
                // sorted and an insertion sort beats a full sort by an order of magnitude.
                for slot in row.iter_mut() {
                    let j = (*slot & 0xFF) as usize;
                    *slot = neighbour_key(distances[j], j);
                }
                insertion_sort(row);
            }
        }

        let mut moved = false;
        for ((point, cluster), search) in points
            .iter()
            .zip(assignment.iter_mut())
            .zip(searches.iter_mut())
        {
            // Upstream moves a point to the cluster it finds strictly closer than its
            // current one, scanning by index: that is the lowest-index nearest cluster
            // whenever that one is closer, and the move only counts past 3 ΔE.
            if search.still_nearest() && *cluster == search.nearest {
                continue;
            }
            // The drifted upper bound is usually what fails the test: the exact distance
            // to the last nearest cluster often settles it without a search.
            let to_last = point.delta_e(&clusters[search.nearest]);
            search.upper = to_last.sqrt();
            let minimum = if search.still_nearest() {
                to_last
            } else {
                let row = &neighbours[search.nearest * n..(search.nearest + 1) * n];
                search.refresh(point, &clusters, row, to_last)
            };
            let best = search.nearest;
            let previous_distance = if *cluster == best {
                minimum
            } else {
                point.delta_e(&clusters[*cluster])
            };
            if minimum < previous_distance
                && (minimum.sqrt() - previous_distance.sqrt()).abs() > MIN_DELTA_E
            {
                moved = true;
                *cluster = best;
            }
        }
        if !moved && iteration != 0 {
            break;
        }

        let previous = clusters.clone();
        recompute_centres(points, counts, &assignment, &mut clusters, &mut populations);
        loosen_bounds(&previous, &clusters, &mut searches);
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

/// Sort key of cluster `index` at `distance` in a neighbour row.
fn neighbour_key(distance: f64, index: usize) -> u64 {
    (u64::from((distance as f32).to_bits()) << 8) | index as u64
}

fn insertion_sort(row: &mut [u64]) {
    for i in 1..row.len() {
        let key = row[i];
        let mut j = i;
        while j > 0 && row[j - 1] > key {
            row[j] = row[j - 1];
            j -= 1;
        }
        row[j] = key;
    }
}

/// Where a point's nearest cluster was last found, with bounds (in ΔE, not squared) that
/// let later rounds skip the search: `upper` bounds the distance to `nearest`, `lower`
/// the distance to every other cluster.
struct Search {
    nearest: usize,
    upper: f64,
    lower: f64,
}

impl Search {
    /// `nearest` is certainly still the unique nearest cluster. The margin absorbs the
    /// rounding of the bound updates, so skipping never changes the result.
    fn still_nearest(&self) -> bool {
        self.upper * (1.0 + 1e-9) + 1e-9 < self.lower
    }

    /// Finds the nearest cluster (lowest index among equals) by walking outwards from the
    /// last one through its sorted neighbour `row`, and returns its squared distance.
    /// By the triangle inequality a cluster `j` is at least |c_j - c_from| - |p - c_from|
    /// from the point, so once that gap exceeds the second-best distance found, no cluster
    /// further along the row can be nearest or second nearest. Comparing the squared gap
    /// keeps square roots out of the loop; the margin covers the f32 rounding of the keys.
    /// `to_from` is the squared distance to the last nearest cluster, with its root in
    /// `upper`.
    fn refresh(&mut self, point: &Lab, clusters: &[Lab], row: &[u64], to_from: f64) -> f64 {
        let from = self.nearest;
        let mut minimum = to_from;
        let from_root = self.upper;
        let mut best = from;
        let mut second = f64::INFINITY;
        for &packed in row {
            let gap = f64::from(f32::from_bits((packed >> 8) as u32)) * (1.0 - 1e-6) - from_root;
            if gap > 0.0 && gap * gap > second {
                break;
            }
            let j = (packed & 0xFF) as usize;
            if j == best {
                continue;
            }
            let d = point.delta_e(&clusters[j]);
            let runner_up = if d < minimum || (d == minimum && j < best) {
                let displaced = minimum;
                minimum = d;
                best = j;
                displaced
            } else {
                d
            };
            second = second.min(runner_up);
        }
        if best != from {
            self.nearest = best;
            self.upper = minimum.sqrt();
        }
        self.lower = second.sqrt();
        minimum
    }
}

/// Moves every cluster to the weighted mean of its points, as upstream (same summation
/// order, so the same bits); an empty cluster is parked at black rather than dropped.
fn recompute_centres(
    points: &[Lab],
    counts: &[u32],
    assignment: &[usize],
    clusters: &mut [Lab],
    populations: &mut [u64],
) {
    let mut sums = vec![[0.0f64; 3]; clusters.len()];
    populations.iter_mut().for_each(|p| *p = 0);
    for ((point, &cluster), &count) in points.iter().zip(assignment).zip(counts) {
        populations[cluster] += u64::from(count);
        let w = f64::from(count);
        sums[cluster][0] += point.l * w;
        sums[cluster][1] += point.a * w;
        sums[cluster][2] += point.b * w;
    }
    for ((cluster, sum), &population) in clusters.iter_mut().zip(&sums).zip(populations.iter()) {
        *cluster = if population == 0 {
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

/// After clusters move, a point's distance to its nearest grows by at most that cluster's
/// shift and its distance to any other shrinks by at most the largest other shift.
fn loosen_bounds(previous: &[Lab], clusters: &[Lab], searches: &mut [Search]) {
    let shifts: Vec<f64> = previous
        .iter()
        .zip(clusters)
        .map(|(old, new)| old.delta_e(new).sqrt())
        .collect();
    let (mut largest, mut largest_at, mut runner_up) = (0.0f64, usize::MAX, 0.0f64);
    for (j, &shift) in shifts.iter().enumerate() {
        if shift > largest {
            runner_up = largest;
            largest = shift;
            largest_at = j;
        } else if shift > runner_up {
            runner_up = shift;
        }
    }
    for search in searches {
        search.upper += shifts[search.nearest];
        search.lower -= if search.nearest == largest_at {
            runner_up
        } else {
            largest
        };
    }
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
        for mode in [Mode::Upstream, Mode::Nearest { max_iterations: 10 }] {
            let mut out = quantize(&points, &[30, 10], &[], &colors, 128, mode);
            out.sort_unstable();
            assert_eq!(out, vec![(0xFF00_00FF, 10), (0xFFFF_0000, 30)], "{mode:?}");
        }
    }

    #[test]
    fn empty_inputs_give_nothing() {
        assert!(quantize(&[], &[], &[], &[0xFF00_0000], 128, Mode::Upstream).is_empty());
        let p = [Lab::default()];
        assert!(quantize(&p, &[1], &[], &[], 128, Mode::Upstream).is_empty());
        let refine = Mode::Nearest { max_iterations: 10 };
        assert!(quantize(&p, &[1], &[7], &[0xFF00_0000], 0, refine).is_empty());
    }
}
