//! Xiaolin Wu's colour quantizer: greedy variance-minimising box cuts of a 32^3 RGB
//! histogram. Follows upstream's C++ `wu.cc`, whose cluster colours seed WSMeans.

use super::lab::{argb_from_rgb, rgb_from_argb, Argb};

const INDEX_BITS: u32 = 5;
const SIDE: usize = (1 << INDEX_BITS) + 1;
const TOTAL: usize = SIDE * SIDE * SIDE;
const MAX_COLORS: usize = 256;

fn index(r: usize, g: usize, b: usize) -> usize {
    r * SIDE * SIDE + g * SIDE + b
}

#[derive(Debug, Clone, Copy, Default)]
struct Box3 {
    r0: usize,
    r1: usize,
    g0: usize,
    g1: usize,
    b0: usize,
    b1: usize,
    vol: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Red,
    Green,
    Blue,
}

/// Wu's clusters, and which one each histogram cell fell into.
pub struct Clusters {
    /// Box averages, in cut order like upstream.
    pub colors: Vec<Argb>,
    owners: Vec<u8>,
}

impl Clusters {
    /// Index in `colors` of the box holding `argb`: usually its nearest cluster, which
    /// makes a good first guess for WSMeans' nearest-cluster search.
    pub fn owner(&self, argb: Argb) -> usize {
        let [r, g, b] = rgb_from_argb(argb).map(|c| usize::from(c >> (8 - INDEX_BITS)));
        usize::from(self.owners[(r << (2 * INDEX_BITS)) | (g << INDEX_BITS) | b])
    }
}

/// Cumulative moments of the colour histogram, built once per image and shared by
/// every `quantize` call.
pub struct Histogram {
    weights: Vec<i64>,
    m_r: Vec<i64>,
    m_g: Vec<i64>,
    m_b: Vec<i64>,
    moments: Vec<f64>,
}

impl Histogram {
    /// `colors` lists each distinct opaque colour with its pixel count; summing per colour
    /// instead of per pixel gives the same (integer-exact) moments.
    pub fn new(colors: &[(Argb, u32)]) -> Histogram {
        let mut h = Histogram {
            weights: vec![0; TOTAL],
            m_r: vec![0; TOTAL],
            m_g: vec![0; TOTAL],
            m_b: vec![0; TOTAL],
            moments: vec![0.0; TOTAL],
        };
        let shift = 8 - INDEX_BITS;
        for &(argb, count) in colors {
            let [r, g, b] = rgb_from_argb(argb);
            let i = index(
                usize::from(r >> shift) + 1,
                usize::from(g >> shift) + 1,
                usize::from(b >> shift) + 1,
            );
            let count = i64::from(count);
            let (r, g, b) = (i64::from(r), i64::from(g), i64::from(b));
            h.weights[i] += count;
            h.m_r[i] += r * count;
            h.m_g[i] += g * count;
            h.m_b[i] += b * count;
            h.moments[i] += ((r * r + g * g + b * b) * count) as f64;
        }
        h.accumulate();
        h
    }

    /// Turns the histogram into 3-D prefix sums so any box's moments cost 8 lookups.
    fn accumulate(&mut self) {
        for r in 1..SIDE {
            let mut area = [0i64; SIDE];
            let mut area_r = [0i64; SIDE];
            let mut area_g = [0i64; SIDE];
            let mut area_b = [0i64; SIDE];
            let mut area_2 = [0f64; SIDE];
            for g in 1..SIDE {
                let (mut line, mut line_r, mut line_g, mut line_b) = (0i64, 0i64, 0i64, 0i64);
                let mut line_2 = 0f64;
                for b in 1..SIDE {
                    let i = index(r, g, b);
                    line += self.weights[i];
                    line_r += self.m_r[i];
                    line_g += self.m_g[i];
                    line_b += self.m_b[i];
                    line_2 += self.moments[i];
                    area[b] += line;
                    area_r[b] += line_r;
                    area_g[b] += line_g;
                    area_b[b] += line_b;
                    area_2[b] += line_2;
                    let p = index(r - 1, g, b);
                    self.weights[i] = self.weights[p] + area[b];
                    self.m_r[i] = self.m_r[p] + area_r[b];
                    self.m_g[i] = self.m_g[p] + area_g[b];
                    self.m_b[i] = self.m_b[p] + area_b[b];
                    self.moments[i] = self.moments[p] + area_2[b];
                }
            }
        }
    }

    /// Up to `max_colors` (1..=256) box averages, in cut order like upstream.
    pub fn quantize(&self, max_colors: usize) -> Clusters {
        let mut clusters = Clusters {
            colors: Vec::new(),
            owners: vec![0; 1 << (3 * INDEX_BITS)],
        };
        if max_colors == 0 || max_colors > MAX_COLORS {
            return clusters;
        }
        let mut cubes = vec![Box3::default(); MAX_COLORS];
        cubes[0].r1 = SIDE - 1;
        cubes[0].g1 = SIDE - 1;
        cubes[0].b1 = SIDE - 1;
        let mut volume_variance = vec![0.0f64; MAX_COLORS];
        let mut color_count = max_colors;
        let mut next = 0usize;
        let mut i = 1usize;
        while i < max_colors {
            let (head, tail) = cubes.split_at_mut(i);
            if self.cut(&mut head[next], &mut tail[0]) {
                volume_variance[next] = self.variance_if_splittable(&cubes[next]);
                volume_variance[i] = self.variance_if_splittable(&cubes[i]);
                i += 1;
            } else {
                // Upstream retries the same slot with the next-best box.
                volume_variance[next] = 0.0;
            }
            let filled = i; // boxes 0..filled exist now
            next = 0;
            let mut best = volume_variance[0];
            for (j, &v) in volume_variance.iter().enumerate().take(filled).skip(1) {
                if v > best {
                    best = v;
                    next = j;
                }
            }
            if best <= 0.0 {
                color_count = filled;
                break;
            }
        }

        for cube in &cubes[..color_count] {
            let weight = vol(cube, &self.weights);
            if weight <= 0 {
                continue;
            }
            // Integer division truncates like upstream's int64 arithmetic.
            let channel = |m: &[i64]| (vol(cube, m) / weight).clamp(0, 255) as u8;
            let owner = clusters.colors.len() as u8;
            clusters.colors.push(argb_from_rgb(
                channel(&self.m_r),
                channel(&self.m_g),
                channel(&self.m_b),
            ));
            // Box bounds are exclusive below and inclusive above, in 1-based histogram
            // coordinates; owners are indexed by the 0-based 5-bit channels.
            for r in cube.r0..cube.r1 {
                for g in cube.g0..cube.g1 {
                    let row = (r << (2 * INDEX_BITS)) | (g << INDEX_BITS);
                    clusters.owners[row + cube.b0..row + cube.b1].fill(owner);
                }
            }
        }
        clusters
    }

    fn variance_if_splittable(&self, cube: &Box3) -> f64 {
        if cube.vol <= 1 {
            return 0.0;
        }
        let dr = vol(cube, &self.m_r) as f64;
        let dg = vol(cube, &self.m_g) as f64;
        let db = vol(cube, &self.m_b) as f64;
        let m = &self.moments;
        let xx = m[index(cube.r1, cube.g1, cube.b1)]
            - m[index(cube.r1, cube.g1, cube.b0)]
            - m[index(cube.r1, cube.g0, cube.b1)]
            + m[index(cube.r1, cube.g0, cube.b0)]
            - m[index(cube.r0, cube.g1, cube.b1)]
            + m[index(cube.r0, cube.g1, cube.b0)]
            + m[index(cube.r0, cube.g0, cube.b1)]
            - m[index(cube.r0, cube.g0, cube.b0)];
        let hypotenuse = dr * dr + dg * dg + db * db;
        let volume = vol(cube, &self.weights) as f64;
        xx - hypotenuse / volume
    }

    fn cut(&self, one: &mut Box3, two: &mut Box3) -> bool {
        let whole = [
            vol(one, &self.m_r),
            vol(one, &self.m_g),
            vol(one, &self.m_b),
            vol(one, &self.weights),
        ];
        let (max_r, cut_r) = self.maximize(one, Direction::Red, one.r0 + 1, one.r1, whole);
        let (max_g, cut_g) = self.maximize(one, Direction::Green, one.g0 + 1, one.g1, whole);
        let (max_b, cut_b) = self.maximize(one, Direction::Blue, one.b0 + 1, one.b1, whole);

        let direction = if max_r >= max_g && max_r >= max_b {
            Direction::Red
        } else if max_g >= max_r && max_g >= max_b {
            Direction::Green
        } else {
            Direction::Blue
        };
        // A lost red comparison implies a positive green or blue maximum, hence a valid cut.
        let Some(cut) = (match direction {
            Direction::Red => cut_r,
            Direction::Green => cut_g,
            Direction::Blue => cut_b,
        }) else {
            return false;
        };

        two.r1 = one.r1;
        two.g1 = one.g1;
        two.b1 = one.b1;
        two.r0 = one.r0;
        two.g0 = one.g0;
        two.b0 = one.b0;
        match direction {
            Direction::Red => {
                two.r0 = cut;
                one.r1 = cut;
            }
            Direction::Green => {
                two.g0 = cut;
                one.g1 = cut;
            }
            Direction::Blue => {
                two.b0 = cut;
                one.b1 = cut;
            }
        }
        one.vol = (one.r1 - one.r0) * (one.g1 - one.g0) * (one.b1 - one.b0);
        two.vol = (two.r1 - two.r0) * (two.g1 - two.g0) * (two.b1 - two.b0);
        true
    }

    /// Best cut position along one axis (by between-class variance) and its score.
    fn maximize(
        &self,
        cube: &Box3,
        direction: Direction,
        first: usize,
        last: usize,
        whole: [i64; 4],
    ) -> (f64, Option<usize>) {
        let moments = [&self.m_r, &self.m_g, &self.m_b, &self.weights];
        let bottom = moments.map(|m| bottom(cube, direction, m));
        let mut max = 0.0f64;
        let mut cut = None;
        for i in first..last {
            let half: [i64; 4] =
                std::array::from_fn(|k| bottom[k] + top(cube, direction, i, moments[k]));
            if half[3] == 0 {
                continue;
            }
            let sq = |h: &[i64; 4]| {
                let (r, g, b) = (h[0] as f64, h[1] as f64, h[2] as f64);
                (r * r + g * g + b * b) / h[3] as f64
            };
            let mut temp = sq(&half);
            let other: [i64; 4] = std::array::from_fn(|k| whole[k] - half[k]);
            if other[3] == 0 {
                continue;
            }
            temp += sq(&other);
            if temp > max {
                max = temp;
                cut = Some(i);
            }
        }
        (max, cut)
    }
}

fn vol(c: &Box3, m: &[i64]) -> i64 {
    m[index(c.r1, c.g1, c.b1)] - m[index(c.r1, c.g1, c.b0)] - m[index(c.r1, c.g0, c.b1)]
        + m[index(c.r1, c.g0, c.b0)]
        - m[index(c.r0, c.g1, c.b1)]
        + m[index(c.r0, c.g1, c.b0)]
        + m[index(c.r0, c.g0, c.b1)]
        - m[index(c.r0, c.g0, c.b0)]
}

fn bottom(c: &Box3, direction: Direction, m: &[i64]) -> i64 {
    match direction {
        Direction::Red => {
            -m[index(c.r0, c.g1, c.b1)] + m[index(c.r0, c.g1, c.b0)] + m[index(c.r0, c.g0, c.b1)]
                - m[index(c.r0, c.g0, c.b0)]
        }
        Direction::Green => {
            -m[index(c.r1, c.g0, c.b1)] + m[index(c.r1, c.g0, c.b0)] + m[index(c.r0, c.g0, c.b1)]
                - m[index(c.r0, c.g0, c.b0)]
        }
        Direction::Blue => {
            -m[index(c.r1, c.g1, c.b0)] + m[index(c.r1, c.g0, c.b0)] + m[index(c.r0, c.g1, c.b0)]
                - m[index(c.r0, c.g0, c.b0)]
        }
    }
}

fn top(c: &Box3, direction: Direction, position: usize, m: &[i64]) -> i64 {
    match direction {
        Direction::Red => {
            m[index(position, c.g1, c.b1)]
                - m[index(position, c.g1, c.b0)]
                - m[index(position, c.g0, c.b1)]
                + m[index(position, c.g0, c.b0)]
        }
        Direction::Green => {
            m[index(c.r1, position, c.b1)]
                - m[index(c.r1, position, c.b0)]
                - m[index(c.r0, position, c.b1)]
                + m[index(c.r0, position, c.b0)]
        }
        Direction::Blue => {
            m[index(c.r1, c.g1, position)]
                - m[index(c.r1, c.g0, position)]
                - m[index(c.r0, c.g1, position)]
                + m[index(c.r0, c.g0, position)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_solid_colours_give_those_colours() {
        let hist = Histogram::new(&[(0xFFFF_0000, 300), (0xFF00_00FF, 100)]);
        let out = hist.quantize(128);
        let mut colors = out.colors.clone();
        colors.sort_unstable();
        assert_eq!(colors, vec![0xFF00_00FF, 0xFFFF_0000]);
        // Each colour's box is the cluster of that colour.
        assert_eq!(out.colors[out.owner(0xFFFF_0000)], 0xFFFF_0000);
        assert_eq!(out.colors[out.owner(0xFF00_00FF)], 0xFF00_00FF);
    }

    #[test]
    fn one_colour_and_empty_input() {
        let one = Histogram::new(&[(0xFF12_3456, 9)]).quantize(128);
        assert_eq!(one.colors, vec![0xFF12_3456]);
        assert_eq!(one.owner(0xFF12_3456), 0);
        assert!(Histogram::new(&[]).quantize(128).colors.is_empty());
        assert!(Histogram::new(&[(0xFF12_3456, 9)])
            .quantize(0)
            .colors
            .is_empty());
    }

    #[test]
    fn respects_the_colour_budget() {
        let colors: Vec<(Argb, u32)> = (0..64u32)
            .map(|i| {
                (
                    argb_from_rgb((i * 4) as u8, (255 - i * 4) as u8, (i * 2) as u8),
                    1 + i,
                )
            })
            .collect();
        let hist = Histogram::new(&colors);
        assert_eq!(hist.quantize(4).colors.len(), 4);
        let many = hist.quantize(128);
        assert!(many.colors.len() <= 64);
        for &(argb, _) in &colors {
            assert!(many.owner(argb) < many.colors.len());
        }
    }
}
