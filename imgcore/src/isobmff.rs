//! HEIF and AVIF container headers (ISO/IEC 23008-12 over ISO BMFF): the primary item's size,
//! its `irot`/`imir` transforms, colour (`colr`: ICC or nclx), bit depth and alpha, read from
//! the `meta` box alone. The coded pixels (HEVC, AV1) are decoded outside the core, by the
//! libraries `imgpipe.foreign` names; the size read here is what the pixel limit is checked
//! against before any of them allocates.
//!
//! Every read is bounded by the file: nothing allocates in proportion to a declared size,
//! except the ICC profile, which is a copy of bytes that are there.

/// What the container says about its primary image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub avif: bool,
    /// Coded (stored) size, before `irot`.
    pub width: u32,
    pub height: u32,
    /// The transforms as an EXIF orientation (1..=8), applied to the stored pixels.
    pub orientation: u8,
    pub icc: Option<Vec<u8>>,
    pub nclx: Option<Nclx>,
    pub bit_depth: u8,
    pub has_alpha: bool,
    /// Images in an AVIF sequence (`avis`), else 1.
    pub frame_count: u32,
    /// The clean aperture (`clap`), when it crops the coded size: what libheif shows.
    pub clean: Option<(u32, u32)>,
}

/// Coding-independent code points (ITU-T H.273).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nclx {
    pub primaries: u16,
    pub transfer: u16,
    pub matrix: u16,
    pub full_range: bool,
}

/// A box: its type and body.
struct Bmff<'a> {
    kind: [u8; 4],
    body: &'a [u8],
}

/// Iterates the boxes of `d`; stops (with `None` through `ok`) at the first malformed one.
struct Boxes<'a> {
    rest: &'a [u8],
    bad: bool,
}

impl<'a> Boxes<'a> {
    fn new(d: &'a [u8]) -> Self {
        Self {
            rest: d,
            bad: false,
        }
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Bmff<'a>;

    fn next(&mut self) -> Option<Bmff<'a>> {
        if self.rest.is_empty() || self.bad {
            return None;
        }
        let parsed = (|| {
            let d = self.rest;
            let size32 = u32::from_be_bytes(d.get(0..4)?.try_into().ok()?);
            let kind: [u8; 4] = d.get(4..8)?.try_into().ok()?;
            let (header, size) = match size32 {
                0 => (8, d.len()),
                1 => {
                    let large = u64::from_be_bytes(d.get(8..16)?.try_into().ok()?);
                    (16, usize::try_from(large).ok()?)
                }
                n => (8, usize::try_from(n).ok()?),
            };
            let body = d.get(header..size)?;
            Some((Bmff { kind, body }, &d[size..]))
        })();
        match parsed {
            Some((b, rest)) => {
                self.rest = rest;
                Some(b)
            }
            None => {
                self.bad = true;
                None
            }
        }
    }
}

fn child<'a>(d: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    Boxes::new(d).find(|b| &b.kind == kind).map(|b| b.body)
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

/// Reads an item id of 16 bits (box version 0) or 32 bits, advancing `at`.
fn item_id(d: &[u8], at: &mut usize, wide: bool) -> Option<u32> {
    let id = if wide {
        be32(d, *at)?
    } else {
        u32::from(be16(d, *at)?)
    };
    *at += if wide { 4 } else { 2 };
    Some(id)
}

/// The brands of `ftyp` that name still images we read, and whether they are AVIF.
pub fn brand(d: &[u8]) -> Option<bool> {
    let first = Boxes::new(d).next()?;
    if &first.kind != b"ftyp" {
        return None;
    }
    let major = first.body.get(0..4)?;
    let compatible = first.body.get(8..).unwrap_or(&[]).chunks_exact(4);
    let brands: Vec<&[u8]> = std::iter::once(major).chain(compatible).collect();
    let has = |b: &[u8]| brands.contains(&b);
    if has(b"avif") || has(b"avis") {
        Some(true)
    } else if [
        "heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1",
    ]
    .iter()
    .any(|b| has(b.as_bytes()))
    {
        Some(false)
    } else {
        None
    }
}

/// An item's properties from `ipco`, in the order `ipma` associates them (the order the
/// transforms apply in).
fn properties<'a>(iprp: &'a [u8], item: u32) -> Option<Vec<Bmff<'a>>> {
    let ipco: Vec<Bmff<'a>> = Boxes::new(child(iprp, b"ipco")?).collect();
    let mut out = Vec::new();
    for ipma in Boxes::new(iprp).filter(|b| &b.kind == b"ipma") {
        let d = ipma.body;
        let version = *d.first()?;
        let wide_index = d.get(3)? & 1 == 1;
        let count = be32(d, 4)?;
        let mut at = 8usize;
        for _ in 0..count {
            let id = item_id(d, &mut at, version >= 1)?;
            let n = *d.get(at)?;
            at += 1;
            for _ in 0..n {
                let index = if wide_index {
                    let v = be16(d, at)? & 0x7FFF;
                    at += 2;
                    usize::from(v)
                } else {
                    let v = d.get(at)? & 0x7F;
                    at += 1;
                    usize::from(v)
                };
                // Index 0 means "no property"; the rest are 1-based.
                if id == item && index > 0 {
                    let p = ipco.get(index - 1)?;
                    out.push(Bmff {
                        kind: p.kind,
                        body: p.body,
                    });
                }
            }
        }
    }
    Some(out)
}

/// Item types from `iinf`, by item id.
fn item_types(meta: &[u8]) -> Option<Vec<(u32, [u8; 4])>> {
    let iinf = child(meta, b"iinf")?;
    let version = *iinf.first()?;
    let skip = if version == 0 { 6 } else { 8 };
    let mut out = Vec::new();
    for infe in Boxes::new(iinf.get(skip..)?).filter(|b| &b.kind == b"infe") {
        let d = infe.body;
        let v = *d.first()?;
        if v < 2 {
            continue;
        }
        let mut at = 4usize;
        let id = item_id(d, &mut at, v >= 3)?;
        at += 2; // protection index
        let kind: [u8; 4] = d.get(at..at + 4)?.try_into().ok()?;
        out.push((id, kind));
    }
    Some(out)
}

/// References of `kind` from `iref`: (from, [to...]).
fn references(meta: &[u8], kind: &[u8; 4]) -> Vec<(u32, Vec<u32>)> {
    let Some(iref) = child(meta, b"iref") else {
        return Vec::new();
    };
    let Some(&version) = iref.first() else {
        return Vec::new();
    };
    let wide = version >= 1;
    let mut out = Vec::new();
    for r in Boxes::new(iref.get(4..).unwrap_or(&[])).filter(|b| &b.kind == kind) {
        let d = r.body;
        let parsed = (|| {
            let mut at = 0usize;
            let from = item_id(d, &mut at, wide)?;
            let n = be16(d, at)?;
            at += 2;
            let mut to = Vec::new();
            for _ in 0..n {
                to.push(item_id(d, &mut at, wide)?);
            }
            Some((from, to))
        })();
        out.extend(parsed);
    }
    out
}

/// One transform as a 2x2 matrix on (x, y) with y down.
type M = [[i8; 2]; 2];

fn mul(a: M, b: M) -> M {
    let mut c = [[0i8; 2]; 2];
    for (i, row) in c.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = a[i][0] * b[0][j] + a[i][1] * b[1][j];
        }
    }
    c
}

/// The EXIF orientations as the matrices that take stored to displayed coordinates.
const ORIENTATIONS: [(u8, M); 8] = [
    (1, [[1, 0], [0, 1]]),
    (2, [[-1, 0], [0, 1]]),
    (3, [[-1, 0], [0, -1]]),
    (4, [[1, 0], [0, -1]]),
    (5, [[0, 1], [1, 0]]),
    (6, [[0, -1], [1, 0]]),
    (7, [[0, -1], [-1, 0]]),
    (8, [[0, 1], [-1, 0]]),
];

/// `irot` and `imir` in their association order, as one EXIF orientation.
fn orientation(props: &[Bmff<'_>]) -> u8 {
    let mut m: M = ORIENTATIONS[0].1;
    for p in props {
        let step = match (&p.kind, p.body.first()) {
            // Anticlockwise quarter turns.
            (b"irot", Some(&a)) => match a & 3 {
                1 => ORIENTATIONS[7].1,
                2 => ORIENTATIONS[2].1,
                3 => ORIENTATIONS[5].1,
                _ => continue,
            },
            // Axis 0 swaps top and bottom, 1 left and right: the reading of libheif and
            // libavif (and of the HEIF amendment that fixed the wording).
            (b"imir", Some(&a)) if a & 1 == 0 => ORIENTATIONS[3].1,
            (b"imir", Some(_)) => ORIENTATIONS[1].1,
            _ => continue,
        };
        m = mul(step, m);
    }
    ORIENTATIONS
        .iter()
        .find(|(_, o)| *o == m)
        .map_or(1, |(n, _)| *n)
}

fn is_alpha_urn(auxc: &[u8]) -> bool {
    let urn = auxc.get(4..).unwrap_or(&[]);
    let urn = urn.split(|&b| b == 0).next().unwrap_or(&[]);
    urn == b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha" || urn == b"urn:mpeg:hevc:2015:auxid:1"
}

/// Parses the container; `None` when it is not a well-formed HEIF/AVIF still with a primary
/// item of known size.
pub fn parse(d: &[u8]) -> Option<Info> {
    let avif = brand(d)?;
    let meta = Boxes::new(d).find(|b| &b.kind == b"meta")?.body.get(4..)?;
    let pitm = child(meta, b"pitm")?;
    let primary = item_id(pitm, &mut 4, *pitm.first()? >= 1)?;
    let iprp = child(meta, b"iprp")?;
    let props = properties(iprp, primary)?;
    let ispe = props.iter().find(|p| &p.kind == b"ispe")?;
    let (width, height) = (be32(ispe.body, 4)?, be32(ispe.body, 8)?);
    let mut info = Info {
        avif,
        width,
        height,
        orientation: orientation(&props),
        bit_depth: 8,
        frame_count: 1,
        ..Info::default()
    };
    // A grid's tiles carry the colour and depth when the grid itself does not.
    let types = item_types(meta).unwrap_or_default();
    let is_grid = types.iter().any(|&(id, t)| id == primary && &t == b"grid");
    let tile_props = if is_grid {
        references(meta, b"dimg")
            .into_iter()
            .find(|(from, _)| *from == primary)
            .and_then(|(_, to)| to.first().copied())
            .and_then(|tile| properties(iprp, tile))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    for p in props.iter().chain(&tile_props) {
        match &p.kind {
            b"colr" => match p.body.get(0..4) {
                Some(b"prof" | b"rICC") if info.icc.is_none() => {
                    info.icc = Some(p.body[4..].to_vec());
                }
                Some(b"nclx") if info.nclx.is_none() => {
                    info.nclx = (|| {
                        Some(Nclx {
                            primaries: be16(p.body, 4)?,
                            transfer: be16(p.body, 6)?,
                            matrix: be16(p.body, 8)?,
                            full_range: p.body.get(10)? & 0x80 != 0,
                        })
                    })();
                }
                _ => {}
            },
            b"clap" => info.clean = clean_aperture(p.body, width, height),
            b"pixi" if info.bit_depth == 8 => {
                if let Some(&bits) = p.body.get(5) {
                    info.bit_depth = bits;
                }
            }
            _ => {}
        }
    }
    info.has_alpha = references(meta, b"auxl").iter().any(|(from, to)| {
        to.contains(&primary)
            && properties(iprp, *from)
                .unwrap_or_default()
                .iter()
                .any(|p| &p.kind == b"auxC" && is_alpha_urn(p.body))
    });
    if avif {
        if let Some(n) = sequence_frames(d) {
            info.frame_count = n;
        }
    }
    Some(info)
}

/// The `clap` width and height (rationals, rounded as libheif does), when valid and smaller
/// than the coded size.
fn clean_aperture(d: &[u8], width: u32, height: u32) -> Option<(u32, u32)> {
    let ratio = |at: usize| -> Option<u32> {
        let (n, den) = (be32(d, at)?, be32(d, at + 4)?);
        if den == 0 {
            return None;
        }
        u32::try_from((u64::from(n) + u64::from(den) / 2) / u64::from(den)).ok()
    };
    let (w, h) = (ratio(0)?, ratio(8)?);
    let smaller = (w, h) != (width, height);
    (w > 0 && h > 0 && w <= width && h <= height && smaller).then_some((w, h))
}

/// The sample count of an AVIF sequence's first track (`moov/trak/mdia/minf/stbl/stsz`).
fn sequence_frames(d: &[u8]) -> Option<u32> {
    let moov = Boxes::new(d).find(|b| &b.kind == b"moov")?.body;
    let trak = child(moov, b"trak")?;
    let stbl = child(child(child(trak, b"mdia")?, b"minf")?, b"stbl")?;
    be32(child(stbl, b"stsz")?, 8).map(|n| n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bmff(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = u32::try_from(body.len() + 8)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn full(kind: &[u8; 4], version: u8, flags: u8, body: &[u8]) -> Vec<u8> {
        let mut b = vec![version, 0, 0, flags];
        b.extend_from_slice(body);
        bmff(kind, &b)
    }

    /// A container whose item 1 has `props` (ipco order = association order).
    fn container(brand: &[u8; 4], props: &[Vec<u8>]) -> Vec<u8> {
        let mut ftyp = brand.to_vec();
        ftyp.extend_from_slice(&[0, 0, 0, 0]);
        ftyp.extend_from_slice(brand);
        let ipco = bmff(b"ipco", &props.concat());
        let mut assoc = vec![0, 1, u8::try_from(props.len()).unwrap()];
        assoc.extend((1..=props.len()).map(|i| u8::try_from(i).unwrap() | 0x80));
        let mut ipma_body = 1u32.to_be_bytes().to_vec();
        ipma_body.extend_from_slice(&assoc);
        let ipma = full(b"ipma", 0, 0, &ipma_body);
        let iprp = bmff(b"iprp", &[ipco, ipma].concat());
        let pitm = full(b"pitm", 0, 0, &[0, 1]);
        let meta = full(b"meta", 0, 0, &[pitm, iprp].concat());
        [bmff(b"ftyp", &ftyp), meta].concat()
    }

    fn ispe(w: u32, h: u32) -> Vec<u8> {
        full(b"ispe", 0, 0, &[w.to_be_bytes(), h.to_be_bytes()].concat())
    }

    #[test]
    fn size_brand_and_colour_come_from_the_primary_item() {
        let mut nclx = b"nclx".to_vec();
        nclx.extend_from_slice(&[0, 12, 0, 13, 0, 6, 0x80]);
        let d = container(b"heic", &[ispe(4032, 3024), bmff(b"colr", &nclx)]);
        let info = parse(&d).unwrap();
        assert_eq!((info.avif, info.width, info.height), (false, 4032, 3024));
        assert_eq!(
            info.nclx,
            Some(Nclx {
                primaries: 12,
                transfer: 13,
                matrix: 6,
                full_range: true
            })
        );
        let icc = [b"prof".as_slice(), b"ICCDATA"].concat();
        let d = container(b"avif", &[ispe(10, 20), bmff(b"colr", &icc)]);
        let info = parse(&d).unwrap();
        assert!(info.avif);
        assert_eq!(info.icc.as_deref(), Some(b"ICCDATA".as_slice()));
    }

    #[test]
    fn transforms_compose_in_association_order() {
        let irot = |a: u8| bmff(b"irot", &[a]);
        let imir = |a: u8| bmff(b"imir", &[a]);
        let cases: [(Vec<Vec<u8>>, u8); 9] = [
            (vec![], 1),
            (vec![irot(1)], 8),
            (vec![irot(2)], 3),
            (vec![irot(3)], 6),
            (vec![imir(1)], 2),
            (vec![imir(0)], 4),
            // Pillow's table (irot_imir_to_exif_orientation): rotate, then mirror.
            (vec![irot(1), imir(1)], 7),
            (vec![irot(1), imir(0)], 5),
            (vec![irot(3), imir(1)], 5),
        ];
        for (props, want) in cases {
            let mut all = vec![ispe(3, 2)];
            all.extend(props);
            assert_eq!(parse(&container(b"heic", &all)).unwrap().orientation, want);
        }
    }

    #[test]
    fn a_clean_aperture_gives_the_shown_size() {
        let clap = [40u32, 1, 32, 1, 0, 1, 0, 1]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<u8>>();
        let d = container(b"heic", &[ispe(64, 64), bmff(b"clap", &clap)]);
        let info = parse(&d).unwrap();
        assert_eq!(
            (info.width, info.height, info.clean),
            (64, 64, Some((40, 32)))
        );
    }

    #[test]
    fn truncated_or_foreign_containers_are_refused() {
        let d = container(b"heic", &[ispe(3, 2)]);
        for cut in [0, 12, 30, d.len() - 1] {
            assert!(parse(&d[..cut]).is_none(), "cut at {cut}");
        }
        assert!(parse(&container(b"isom", &[ispe(3, 2)])).is_none());
        // No ispe: no size, refused.
        assert!(parse(&container(b"heic", &[bmff(b"irot", &[1])])).is_none());
    }
}
