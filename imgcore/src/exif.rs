//! Just enough TIFF/EXIF parsing for the orientation tag and for TIFF headers.
//! Every read is bounds-checked: the bytes are untrusted.

#[derive(Clone, Copy)]
pub struct Tiff<'a> {
    data: &'a [u8],
    little: bool,
}

/// One IFD entry: tag, field type, count and the 4-byte value/offset field.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub tag: u16,
    pub kind: u16,
    pub count: u32,
    value_at: usize,
}

impl<'a> Tiff<'a> {
    /// `data` starts at the TIFF byte-order mark ("II*\0" or "MM\0*").
    pub fn new(data: &'a [u8]) -> Option<Self> {
        let little = match data.get(..4)? {
            [b'I', b'I', 42, 0] => true,
            [b'M', b'M', 0, 42] => false,
            _ => return None,
        };
        Some(Self { data, little })
    }

    pub fn u16_at(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.data.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    pub fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    /// Entries of the first IFD.
    pub fn ifd0(&self) -> Vec<Entry> {
        let Some(start) = self.u32_at(4).and_then(|o| usize::try_from(o).ok()) else {
            return Vec::new();
        };
        let Some(n) = self.u16_at(start) else {
            return Vec::new();
        };
        (0..usize::from(n))
            .map_while(|i| {
                let at = start.checked_add(2)?.checked_add(i.checked_mul(12)?)?;
                Some(Entry {
                    tag: self.u16_at(at)?,
                    kind: self.u16_at(at + 2)?,
                    count: self.u32_at(at + 4)?,
                    value_at: at + 8,
                })
            })
            .collect()
    }

    /// First value of a SHORT or LONG entry (stored inline, as every tag we read is).
    pub fn scalar(&self, e: &Entry) -> Option<u32> {
        match e.kind {
            3 => self.u16_at(e.value_at).map(u32::from),
            4 => self.u32_at(e.value_at),
            _ => None,
        }
    }
}

/// EXIF orientation (1..8) from an EXIF block, which may start with "Exif\0\0".
/// Anything unreadable or out of range counts as 1, as Pillow does.
pub fn orientation(exif: &[u8]) -> u8 {
    let body = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    let Some(tiff) = Tiff::new(body) else {
        return 1;
    };
    tiff.ifd0()
        .iter()
        .find(|e| e.tag == 0x0112)
        .and_then(|e| tiff.scalar(e))
        .and_then(|v| u8::try_from(v).ok())
        .filter(|v| (1..=8).contains(v))
        .unwrap_or(1)
}

#[cfg(test)]
pub(crate) fn exif_with_orientation(value: u16, little: bool) -> Vec<u8> {
    let w16 = |v: u16| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let w32 = |v: u32| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let mut v = b"Exif\0\0".to_vec();
    v.extend_from_slice(if little { b"II*\0" } else { b"MM\0*" });
    v.extend_from_slice(&w32(8));
    v.extend_from_slice(&w16(1));
    v.extend_from_slice(&w16(0x0112));
    v.extend_from_slice(&w16(3));
    v.extend_from_slice(&w32(1));
    v.extend_from_slice(&w16(value));
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_orientation_both_endians() {
        for o in 1..=8 {
            assert_eq!(orientation(&exif_with_orientation(o, true)), o as u8);
            assert_eq!(orientation(&exif_with_orientation(o, false)), o as u8);
        }
    }

    #[test]
    fn garbage_is_orientation_one() {
        assert_eq!(orientation(&exif_with_orientation(9, true)), 1);
        assert_eq!(orientation(b"Exif\0\0II*\0\xff\xff\xff\xff"), 1);
        assert_eq!(orientation(b""), 1);
        let mut cut = exif_with_orientation(6, true);
        cut.truncate(20);
        assert_eq!(orientation(&cut), 1);
    }
}
