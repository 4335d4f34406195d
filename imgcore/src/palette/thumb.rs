//! ThumbHash of the thumbnail, base64-encoded.

/// ThumbHash's encoder expects at most 100x100 (more pixels add cost, not detail).
const MAX_SIDE: usize = 100;

/// Standard-alphabet base64 ThumbHash of a straight-alpha RGBA8 image, or an empty string
/// for an image without pixels (which has no meaningful hash).
pub fn thumbhash_base64(rgba: &[u8], width: usize, height: usize) -> String {
    if width == 0 || height == 0 || rgba.len() < width * height * 4 {
        return String::new();
    }
    let rgba = &rgba[..width * height * 4];
    let hash = if width <= MAX_SIDE && height <= MAX_SIDE {
        super::thumb_hash::encode(width, height, rgba)
    } else {
        let (w, h, small) = box_downsample(rgba, width, height);
        super::thumb_hash::encode(w, h, &small)
    };
    base64_encode(&hash)
}

/// Shrinks to fit 100x100, keeping the aspect ratio. Colours are averaged weighted by alpha
/// so transparent pixels' (meaningless) RGB does not bleed into visible ones.
fn box_downsample(rgba: &[u8], width: usize, height: usize) -> (usize, usize, Vec<u8>) {
    let longest = width.max(height);
    let w = ((width * MAX_SIDE + longest / 2) / longest).clamp(1, MAX_SIDE);
    let h = ((height * MAX_SIDE + longest / 2) / longest).clamp(1, MAX_SIDE);
    let mut out = Vec::with_capacity(w * h * 4);
    for ty in 0..h {
        let (y0, y1) = (
            ty * height / h,
            ((ty + 1) * height / h).max(ty * height / h + 1),
        );
        for tx in 0..w {
            let (x0, x1) = (
                tx * width / w,
                ((tx + 1) * width / w).max(tx * width / w + 1),
            );
            let mut sum = [0u64; 4];
            let mut plain = [0u64; 3];
            for y in y0..y1 {
                for px in rgba[(y * width + x0) * 4..(y * width + x1) * 4].chunks_exact(4) {
                    let a = u64::from(px[3]);
                    for c in 0..3 {
                        sum[c] += u64::from(px[c]) * a;
                        plain[c] += u64::from(px[c]);
                    }
                    sum[3] += a;
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u64;
            for c in 0..3 {
                // A fully transparent box keeps its plain average colour.
                let v = (sum[c] + sum[3] / 2)
                    .checked_div(sum[3])
                    .unwrap_or((plain[c] + n / 2) / n);
                out.push(v as u8);
            }
            out.push(((sum[3] + n / 2) / n) as u8);
        }
    }
    (w, h, out)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// RFC 4648 base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base64_decode(text: &str) -> Vec<u8> {
        let mut bits = 0u32;
        let mut nbits = 0;
        let mut out = Vec::new();
        for c in text.bytes().filter(|&c| c != b'=') {
            let v = ALPHABET
                .iter()
                .position(|&a| a == c)
                .expect("base64 alphabet") as u32;
            bits = (bits << 6) | v;
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                out.push((bits >> nbits) as u8);
            }
        }
        out
    }

    #[test]
    fn base64_known_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(&[0xFB, 0xFF]), "+/8=");
    }

    fn gradient(w: usize, h: usize, alpha: u8) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| [(i % w * 255 / w) as u8, (i / w * 255 / h) as u8, 128, alpha])
            .collect()
    }

    #[test]
    fn hash_round_trips_and_has_thumbhash_size() {
        let img = gradient(64, 48, 255);
        let text = thumbhash_base64(&img, 64, 48);
        let hash = base64_decode(&text);
        assert_eq!(base64_encode(&hash), text);
        // An opaque landscape ThumbHash is 5 header bytes plus packed AC terms: 20-25 bytes.
        assert!((20..=25).contains(&hash.len()), "{} bytes", hash.len());
        let (w, h, _) = thumbhash::thumb_hash_to_rgba(&hash).expect("valid hash");
        assert!(w > h, "aspect ratio kept: {w}x{h}");
    }

    #[test]
    fn large_images_are_downsampled() {
        let img = gradient(112, 84, 200);
        let text = thumbhash_base64(&img, 112, 84);
        assert!(!text.is_empty());
        let (w, h, small) = box_downsample(&img, 112, 84);
        assert_eq!((w, h, small.len()), (100, 75, 100 * 75 * 4));
        assert!(small.chunks_exact(4).all(|p| p[3] == 200));
        let (w, h, _) = box_downsample(&gradient(1000, 3, 255), 1000, 3);
        assert_eq!((w, h), (100, 1));
    }

    #[test]
    fn degenerate_images_do_not_panic() {
        assert_eq!(thumbhash_base64(&[], 0, 0), "");
        assert_eq!(thumbhash_base64(&[1, 2, 3], 1, 1), "");
        assert!(!thumbhash_base64(&[10, 20, 30, 0], 1, 1).is_empty());
    }
}
