//! EXIF orientation, exactly as Pillow's `ImageOps.exif_transpose`. The pipeline orients the
//! source or each rendition, whichever moves fewer pixels; `crop_to_stored` maps a display
//! crop back onto the stored image for the second way.

use std::mem::MaybeUninit;

use crate::image::Pixels;
use crate::rendition::Crop;

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Output size after applying `orientation` to a `w` x `h` image.
pub fn oriented_size(w: u32, h: u32, orientation: u8) -> (u32, u32) {
    if orientation >= 5 {
        (h, w)
    } else {
        (w, h)
    }
}

/// Applies orientation 1..8 to an interleaved `channels`-per-pixel buffer; returns the
/// buffer and its new size. Flips (2..=4) reuse the buffer in place; transposes (5..=8) need
/// a second one. Values outside 2..=8 return the input unchanged.
pub fn apply(
    pixels: Vec<u8>,
    w: u32,
    h: u32,
    channels: usize,
    orientation: u8,
) -> (Vec<u8>, u32, u32) {
    match channels {
        1 => apply_n::<1>(pixels, w, h, orientation),
        3 => apply_n::<3>(pixels, w, h, orientation),
        4 => apply_n::<4>(pixels, w, h, orientation),
        _ => (pixels, w, h),
    }
}

/// `px` with `orientation` applied.
pub fn oriented(px: Pixels, orientation: u8) -> Pixels {
    let (data, width, height) = apply(px.data, px.width, px.height, px.channels, orientation);
    Pixels {
        width,
        height,
        channels: px.channels,
        data,
    }
}

fn apply_n<const N: usize>(
    pixels: Vec<u8>,
    w: u32,
    h: u32,
    orientation: u8,
) -> (Vec<u8>, u32, u32) {
    let (sw, sh) = (w as usize, h as usize);
    let whole = sw.checked_mul(sh).and_then(|n| n.checked_mul(N));
    if !(2..=8).contains(&orientation) || sw == 0 || whole != Some(pixels.len()) {
        return (pixels, w, h);
    }
    let (ow, oh) = oriented_size(w, h, orientation);
    let mut pixels = pixels;
    match orientation {
        2 => pixels
            .chunks_exact_mut(sw * N)
            .for_each(reverse_pixels::<N>),
        // Rotating by 180 degrees reverses the pixel order of the whole image.
        3 => reverse_pixels::<N>(&mut pixels),
        4 => {
            let (top, bottom) = pixels.split_at_mut(sh / 2 * sw * N);
            let bottom = &mut bottom[sh % 2 * sw * N..];
            for (t, b) in top
                .chunks_exact_mut(sw * N)
                .zip(bottom.chunks_exact_mut(sw * N).rev())
            {
                t.swap_with_slice(b);
            }
        }
        _ => {
            let mut out = Vec::with_capacity(pixels.len());
            transpose::<N>(&pixels, out.spare_capacity_mut(), sw, sh, orientation);
            // SAFETY: the transpose is a bijection between pixel positions, so it wrote
            // every one of the `pixels.len()` bytes.
            unsafe { out.set_len(pixels.len()) };
            pixels = out;
        }
    }
    (pixels, ow, oh)
}

/// Reverses the order of the `N`-byte pixels of `run` in place: flips need no second buffer.
fn reverse_pixels<const N: usize>(run: &mut [u8]) {
    let half = run.len() / N / 2;
    let (left, right) = run.split_at_mut(half * N);
    let right_start = right.len() - half * N;
    for (l, r) in left
        .chunks_exact_mut(N)
        .zip(right[right_start..].chunks_exact_mut(N).rev())
    {
        l.swap_with_slice(r);
    }
}

/// Orientations 5..8: display pixel (x, y) comes from stored row `x` (or `sh - 1 - x`) and
/// column `y` (or `sw - 1 - y`). Whole 16x16 blocks go through AVX-512 where the CPU has it;
/// the rest is walked in 8x8 blocks held in registers, so every read and write is a short
/// contiguous run of fixed length.
fn transpose<const N: usize>(src: &[u8], out: &mut [MaybeUninit<u8>], sw: usize, sh: usize, o: u8) {
    let rows_down = matches!(o, 5 | 8);
    let cols_right = matches!(o, 5 | 6);
    #[cfg(target_arch = "x86_64")]
    let (rows, cols) = avx512::blocks::<N>(
        src,
        out,
        avx512::Geometry {
            sw,
            sh,
            rows_down,
            cols_right,
        },
    );
    #[cfg(not(target_arch = "x86_64"))]
    let (rows, cols) = (0, 0);
    let area = Transpose {
        sw,
        sh,
        rows_down,
        cols_right,
    };
    area.blocks::<N>(src, out, 0..rows, cols..sw);
    area.blocks::<N>(src, out, rows..sh, 0..sw);
}

struct Transpose {
    sw: usize,
    sh: usize,
    rows_down: bool,
    cols_right: bool,
}

impl Transpose {
    /// Moves stored rows `rows` x columns `cols` in 8x8 blocks.
    fn blocks<const N: usize>(
        &self,
        src: &[u8],
        out: &mut [MaybeUninit<u8>],
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
    ) {
        const B: usize = 8;
        let (sw, sh, dw) = (self.sw, self.sh, self.sh);
        let dx = |r: usize| if self.rows_down { r } else { sh - 1 - r };
        let dy = |c: usize| if self.cols_right { c } else { sw - 1 - c };
        for r0 in rows.clone().step_by(B) {
            for c0 in cols.clone().step_by(B) {
                if r0 + B > rows.end || c0 + B > cols.end {
                    for r in r0..(r0 + B).min(rows.end) {
                        for c in c0..(c0 + B).min(cols.end) {
                            let (i, j) = ((r * sw + c) * N, (dy(c) * dw + dx(r)) * N);
                            write(&mut out[j..j + N], &src[i..i + N]);
                        }
                    }
                    continue;
                }
                let mut blk = [[[0u8; N]; B]; B];
                for (k, row) in blk.iter_mut().enumerate() {
                    let run = &src[((r0 + k) * sw + c0) * N..][..B * N];
                    for (px, s) in row.iter_mut().zip(run.chunks_exact(N)) {
                        px.copy_from_slice(s);
                    }
                }
                let x0 = if self.rows_down { r0 } else { sh - r0 - B };
                for j in 0..B {
                    let run = &mut out[(dy(c0 + j) * dw + x0) * N..][..B * N];
                    for (k, d) in run.chunks_exact_mut(N).enumerate() {
                        let i = if self.rows_down { k } else { B - 1 - k };
                        write(d, &blk[i][j]);
                    }
                }
            }
        }
    }
}

fn write(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        d.write(s);
    }
}

/// Maps a crop given in display coordinates (image of `disp_w` x `disp_h` after orientation)
/// to the same region in stored coordinates.
pub fn crop_to_stored(c: Crop, disp_w: u32, disp_h: u32, orientation: u8) -> Crop {
    let (dw, dh) = (f64::from(disp_w), f64::from(disp_h));
    let right = dw - c.left - c.width;
    let bottom = dh - c.top - c.height;
    let (left, top, swap) = match orientation {
        2 => (right, c.top, false),
        3 => (right, bottom, false),
        4 => (c.left, bottom, false),
        5 => (c.top, c.left, true),
        6 => (c.top, right, true),
        7 => (bottom, right, true),
        8 => (bottom, c.left, true),
        _ => (c.left, c.top, false),
    };
    let (width, height) = if swap {
        (c.height, c.width)
    } else {
        (c.width, c.height)
    };
    Crop {
        left,
        top,
        width,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3x2 image, one channel, pixel value = index: rows [0 1 2] [3 4 5].
    fn img() -> Vec<u8> {
        (0..6).collect()
    }

    #[test]
    fn matches_pillow_transposes() {
        let cases: [(u8, (u32, u32), [u8; 6]); 8] = [
            (1, (3, 2), [0, 1, 2, 3, 4, 5]),
            (2, (3, 2), [2, 1, 0, 5, 4, 3]), // FLIP_LEFT_RIGHT
            (3, (3, 2), [5, 4, 3, 2, 1, 0]), // ROTATE_180
            (4, (3, 2), [3, 4, 5, 0, 1, 2]), // FLIP_TOP_BOTTOM
            (5, (2, 3), [0, 3, 1, 4, 2, 5]), // TRANSPOSE
            (6, (2, 3), [3, 0, 4, 1, 5, 2]), // ROTATE_270 (90 clockwise)
            (7, (2, 3), [5, 2, 4, 1, 3, 0]), // TRANSVERSE
            (8, (2, 3), [2, 5, 1, 4, 0, 3]), // ROTATE_90 (90 counter-clockwise)
        ];
        for (o, size, want) in cases {
            let (out, w, h) = apply(img(), 3, 2, 1, o);
            assert_eq!(
                ((w, h), out.as_slice()),
                (size, &want[..]),
                "orientation {o}"
            );
        }
    }

    /// Display pixel (x, y) is stored pixel `a + x * dx + y * dy`, per orientation.
    fn reference(px: &[u8], w: usize, h: usize, n: usize, o: u8) -> Vec<u8> {
        let (w, h) = (w as isize, h as isize);
        let (a, dx, dy) = match o {
            1 => (0, 1, w),
            2 => (w - 1, -1, w),
            3 => (h * w - 1, -1, -w),
            4 => ((h - 1) * w, 1, -w),
            5 => (0, w, 1),
            6 => ((h - 1) * w, -w, 1),
            7 => ((h - 1) * w + w - 1, -w, -1),
            _ => (w - 1, w, -1),
        };
        let (dw, dh) = if o >= 5 { (h, w) } else { (w, h) };
        (0..dh)
            .flat_map(|y| (0..dw).map(move |x| a + x * dx + y * dy))
            .flat_map(|i| px[i as usize * n..i as usize * n + n].to_vec())
            .collect()
    }

    #[test]
    fn every_orientation_matches_the_reference_across_sizes_and_block_edges() {
        for (w, h) in [
            (8, 8),
            (16, 24),
            (19, 13),
            (1, 20),
            (20, 1),
            (33, 9),
            (1, 1),
            // Whole 16x16 blocks with 8x8 and single-pixel remainders on both edges.
            (37, 50),
            (48, 32),
            (65, 17),
        ] {
            for n in [1, 3, 4] {
                let px: Vec<u8> = (0..w * h * n).map(|i| (i * 31 % 255) as u8).collect();
                for o in 1..=8u8 {
                    let (out, ow, oh) = apply(px.clone(), w as u32, h as u32, n, o);
                    let size = oriented_size(w as u32, h as u32, o);
                    assert_eq!((ow, oh), size);
                    assert_eq!(out, reference(&px, w, h, n, o), "{w}x{h}x{n} o{o}");
                }
            }
        }
    }

    #[test]
    fn multi_channel_pixels_move_together() {
        let rgb: Vec<u8> = (0..6).flat_map(|i| [i, i + 10, i + 20]).collect();
        let (out, _, _) = apply(rgb, 3, 2, 3, 6);
        assert_eq!(&out[..6], &[3, 13, 23, 0, 10, 20]);
    }

    #[test]
    fn crop_mapping_commutes_with_orientation() {
        // A 4x3 image: crop in display space == crop in stored space, then oriented.
        let stored: Vec<u8> = (0..12).collect();
        for o in 1..=8u8 {
            let (disp, dw, dh) = apply(stored.clone(), 4, 3, 1, o);
            let c = Crop {
                left: 1.0,
                top: 0.0,
                width: if o >= 5 { 2.0 } else { 3.0 },
                height: 2.0,
            };
            let take = |buf: &[u8], bw: u32, c: Crop| -> Vec<u8> {
                let (l, t, w, h) = (
                    c.left as usize,
                    c.top as usize,
                    c.width as usize,
                    c.height as usize,
                );
                (t..t + h)
                    .flat_map(|y| (l..l + w).map(move |x| (y, x)))
                    .map(|(y, x)| buf[y * bw as usize + x])
                    .collect()
            };
            let want = take(&disp, dw, c);
            let sc = crop_to_stored(c, dw, dh, o);
            let part = take(&stored, 4, sc);
            let (got, _, _) = apply(part, sc.width as u32, sc.height as u32, 1, o);
            assert_eq!(got, want, "orientation {o}");
        }
    }
}
