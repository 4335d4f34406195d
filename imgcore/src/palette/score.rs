//! Material's Score: ranks quantized colours for use as a theme seed, as upstream's
//! `RankedSuggestions` with its default options (filtering on, 4 colours wanted).

use super::cam16::{cam_from_argb, diff_degrees, sanitize_degrees};
use super::lab::Argb;

const TARGET_CHROMA: f64 = 48.0;
const WEIGHT_PROPORTION: f64 = 0.7;
const WEIGHT_CHROMA_ABOVE: f64 = 0.3;
const WEIGHT_CHROMA_BELOW: f64 = 0.1;
const CUTOFF_CHROMA: f64 = 5.0;
const CUTOFF_EXCITED_PROPORTION: f64 = 0.01;

/// Google Blue, upstream's seed when no colour is chromatic or common enough.
pub const FALLBACK: Argb = 0xFF42_85F4;

fn hue_bucket(degrees: f64) -> usize {
    // Hues are already in [0, 360); rounding can reach 360, which wraps to 0 as upstream.
    (degrees.round() as i64).rem_euclid(360) as usize
}

/// Colours best suited to seed a theme, best first; never empty (falls back to
/// [`FALLBACK`]). `populations` maps colours to pixel counts; pass it sorted by colour,
/// the order of upstream's `std::map`, so equal scores rank the same way.
pub fn ranked_suggestions(populations: &[(Argb, u32)], desired: usize) -> Vec<Argb> {
    let colors: Vec<(Argb, f64, f64)> = populations
        .iter()
        .map(|&(argb, _)| {
            let cam = cam_from_argb(argb);
            (argb, sanitize_degrees(cam.hue), cam.chroma)
        })
        .collect();

    let mut hue_population = [0u64; 360];
    let mut population_sum = 0.0f64;
    for (&(_, population), &(_, hue, _)) in populations.iter().zip(&colors) {
        hue_population[(hue.floor() as usize).min(359)] += u64::from(population);
        population_sum += f64::from(population);
    }

    // Each hue is credited with the usage of the 30-degree slice around it; the additions
    // run in upstream's order so the sums are bit-identical.
    let mut excited = [0.0f64; 360];
    for (hue, &population) in hue_population.iter().enumerate() {
        let proportion = population as f64 / population_sum;
        for neighbour in hue as i64 - 14..hue as i64 + 16 {
            excited[neighbour.rem_euclid(360) as usize] += proportion;
        }
    }

    let mut scored: Vec<(Argb, f64, f64)> = colors
        .iter()
        .filter_map(|&(argb, hue, chroma)| {
            let proportion = excited[hue_bucket(hue)];
            if chroma < CUTOFF_CHROMA || proportion <= CUTOFF_EXCITED_PROPORTION {
                return None;
            }
            let proportion_score = proportion * 100.0 * WEIGHT_PROPORTION;
            let chroma_weight = if chroma < TARGET_CHROMA {
                WEIGHT_CHROMA_BELOW
            } else {
                WEIGHT_CHROMA_ABOVE
            };
            let score = proportion_score + (chroma - TARGET_CHROMA) * chroma_weight;
            Some((argb, hue, score))
        })
        .collect();
    scored.sort_by(|a, b| b.2.total_cmp(&a.2));

    // Prefer colours far apart in hue: try 90 degrees of separation, then relax to 15.
    let mut chosen: Vec<(Argb, f64)> = Vec::new();
    for difference in (15..=90).rev() {
        chosen.clear();
        for &(argb, hue, _) in &scored {
            if chosen
                .iter()
                .all(|&(_, h)| diff_degrees(hue, h) >= f64::from(difference))
            {
                chosen.push((argb, hue));
                if chosen.len() >= desired {
                    break;
                }
            }
        }
        if chosen.len() >= desired {
            break;
        }
    }
    if chosen.is_empty() {
        return vec![FALLBACK];
    }
    chosen.into_iter().map(|(argb, _)| argb).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greys_and_nothing_fall_back_to_google_blue() {
        assert_eq!(ranked_suggestions(&[], 4), vec![FALLBACK]);
        let greys = [(0xFF00_0000, 10), (0xFF80_8080, 50), (0xFFFF_FFFF, 40)];
        assert_eq!(ranked_suggestions(&greys, 4), vec![FALLBACK]);
    }

    #[test]
    fn rare_colours_are_filtered_out() {
        // 0.5% red is under the 1% excited-proportion cutoff.
        assert_eq!(
            ranked_suggestions(&[(0xFF80_8080, 995), (0xFFFF_0000, 5)], 4),
            vec![FALLBACK]
        );
    }

    #[test]
    fn ranks_like_upstream() {
        // Upstream's score_test "prioritizes chroma" and "generates gBlue when no colors".
        let input = [(0xFF00_0000, 1), (0xFFFF_FFFF, 1), (0xFF00_00FF, 1)];
        assert_eq!(ranked_suggestions(&input, 4), vec![0xFF00_00FF]);
        let input = [(0xFFFF_0000, 1), (0xFF00_FF00, 1), (0xFF00_00FF, 1)];
        assert_eq!(
            ranked_suggestions(&input, 4),
            vec![0xFFFF_0000, 0xFF00_FF00, 0xFF00_00FF]
        );
        // A big proportion beats slightly more chroma.
        let input = [
            (0xFF00_8772, 1),
            (0xFF30_0000, 1),
            (0xFF4B_F0FF, 100),
            (0xFFE0_F0FF, 1),
        ];
        assert_eq!(ranked_suggestions(&input, 4)[0], 0xFF4B_F0FF);
    }
}
