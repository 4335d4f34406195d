//! The whole job for one image: probe, decode once, colour-manage, resize (in stored
//! orientation), orient, encode in parallel, palette.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use fast_image_resize::Resizer;

use crate::attention::{self, Saliency};
use crate::encode::{self, OutFormat};
use crate::error::{ImgError, Result};
use crate::header::{self, Header};
use crate::image::{area, Pixels};
use crate::palette::{self, PaletteResult};
use crate::rendition::{self, Crop, Focus, Spec};
use crate::{color, decode, limits, orient, resize, thumbnail};

/// How cover crops are placed when the image has no focal point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CropMode {
    /// Around the region of highest saliency (`attention`).
    Attention,
    /// In the centre.
    Centre,
}

impl CropMode {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "attention" => Ok(Self::Attention),
            "centre" => Ok(Self::Centre),
            other => Err(ImgError::InvalidArgument(format!(
                "crop must be \"attention\" or \"centre\", got {other:?}"
            ))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub max_pixels: u64,
    pub jpeg_quality: u8,
    pub jpeg_effort: encode::JpegEffort,
    pub webp_quality: f32,
    pub webp_method: i32,
    pub formats: Vec<OutFormat>,
    pub threads: usize,
    pub palette: bool,
    /// The image's focal point, in display fractions: cover crops are centred on it when
    /// given, else placed as `crop` says.
    pub focus: Option<Focus>,
    pub crop: CropMode,
    /// Also return every rendition's pixels, for encoders outside the core (AVIF).
    pub keep_pixels: bool,
}

/// Seconds per stage, summed over threads.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    pub decode: f64,
    pub orient: f64,
    pub icc: f64,
    pub resize: f64,
    pub jpeg: f64,
    pub webp: f64,
    pub palette: f64,
    pub attention: f64,
}

impl Timings {
    pub fn entries(&self) -> [(&'static str, f64); 8] {
        [
            ("decode", self.decode),
            ("orient", self.orient),
            ("icc", self.icc),
            ("resize", self.resize),
            ("jpeg", self.jpeg),
            ("webp", self.webp),
            ("palette", self.palette),
            ("attention", self.attention),
        ]
    }
}

fn timed<T>(slot: &mut f64, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    *slot += start.elapsed().as_secs_f64();
    out
}

/// A rendition's pixels in display orientation.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub name: String,
    pub pixels: Pixels,
}

#[derive(Clone, Debug)]
pub struct Output {
    pub name: String,
    pub format: OutFormat,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Processed {
    pub header: Header,
    pub outputs: Vec<Output>,
    pub palette: Option<PaletteResult>,
    pub timings: Timings,
    /// The renditions' pixels, when `Options::keep_pixels` asked for them.
    pub rendered: Vec<Rendered>,
}

/// Header facts, refusing images above `max_pixels` before any pixel exists.
pub fn probe(data: &[u8], max_pixels: u64) -> Result<Header> {
    let h = header::parse(data)?;
    limits::check_dimensions(h.width, h.height, max_pixels)?;
    if h.coded_pixels > max_pixels {
        return Err(ImgError::TooLarge(format!(
            "image too large: {} coded pixels exceed the limit of {max_pixels}",
            h.coded_pixels
        )));
    }
    Ok(h)
}

/// Decoded sRGB pixels in stored orientation; `external` are pixels decoded outside the
/// core from `data` (HEIF, AVIF).
fn load(
    data: &[u8],
    external: Option<decode::External>,
    max_pixels: u64,
    threads: usize,
    t: &mut Timings,
) -> Result<(Header, Pixels)> {
    let (header, decoded) = timed(&mut t.decode, || -> Result<_> {
        let h = probe(data, max_pixels)?;
        match external {
            None => {
                let d = decode::decode(data, &h, max_pixels)?;
                Ok((h, d))
            }
            Some(px) => decode::external(data, &h, px, max_pixels),
        }
    })?;
    let pixels = timed(&mut t.icc, || color::to_srgb(decoded, threads))?;
    Ok((header, pixels))
}

/// A rendition's pixels before orientation: the source itself when the rendition is the whole
/// source at its own size (never copied), or a resampled image.
enum Resampled {
    Source,
    Owned(Pixels),
}

/// Every rendition in display orientation.
fn render(
    header: &Header,
    src: Pixels,
    specs: &[Spec],
    focus_for: &mut rendition::FocusFor<'_>,
    t: &mut Timings,
) -> Result<Vec<Rendered>> {
    let (dw, dh) = orient::oriented_size(src.width, src.height, header.orientation);
    let plans = rendition::plan_with(specs, dw, dh, focus_for)?;
    // Orienting copies every pixel it moves. When the renditions hold more pixels than the
    // source (a 2 MP photo: its full-size rendition plus 1280, 640, 320), orienting the
    // source once costs less than orienting each rendition; otherwise renditions are resized
    // in stored orientation and oriented afterwards.
    let rendition_pixels: u64 = plans.iter().map(|p| area(p.width, p.height)).sum();
    let (src, o) = if header.orientation != 1 && rendition_pixels >= src.area() {
        let oriented = timed(&mut t.orient, || orient::oriented(src, header.orientation));
        (oriented, 1)
    } else {
        (src, header.orientation)
    };
    // Largest first, so smaller renditions can be resampled from larger ones.
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(area(plans[i].width, plans[i].height)));
    let mut done: Vec<Option<Resampled>> = (0..plans.len()).map(|_| None).collect();
    let mut resizer = Resizer::new();
    for &i in &order {
        let plan = &plans[i];
        let crop = orient::crop_to_stored(plan.crop, dw, dh, o);
        let (tw, th) = orient::oriented_size(plan.width, plan.height, o);
        if resize::is_identity(&src, crop, tw, th) {
            done[i] = Some(Resampled::Source);
            continue;
        }
        // Resampled from the smallest full-frame rendition already made that still covers the
        // target: most of the work is then done once, on the largest rendition. Chains like
        // 3840 -> 1920 -> 1280 -> 640 -> 320 stay above 48 dB PSNR against Pillow's direct
        // LANCZOS over the corpus (the bar is 35 dB), as test_chained_renditions_psnr_vs_pillow
        // checks.
        let base = plans
            .iter()
            .zip(&done)
            .filter(|(p, _)| p.is_full_frame(dw, dh))
            .filter_map(|(_, d)| match d {
                Some(Resampled::Owned(mid)) => Some(mid),
                _ => None,
            })
            .filter(|mid| {
                let c = resize::crop_on(crop, src.width, src.height, mid.width, mid.height);
                c.width >= f64::from(tw) && c.height >= f64::from(th)
            })
            .min_by_key(|mid| mid.area());
        let out = timed(&mut t.resize, || match base {
            Some(mid) => {
                let c = resize::crop_on(crop, src.width, src.height, mid.width, mid.height);
                resize::resize(&mut resizer, mid, c, tw, th)
            }
            None => resize::resize(&mut resizer, &src, crop, tw, th),
        })?;
        done[i] = Some(Resampled::Owned(out));
    }
    let mut uses = done
        .iter()
        .filter(|d| matches!(d, Some(Resampled::Source)))
        .count();
    let mut src = Some(src);
    let renders = timed(&mut t.orient, || {
        plans
            .into_iter()
            .zip(done)
            .map(|(plan, px)| {
                let px = match px {
                    Some(Resampled::Owned(px)) => px,
                    Some(Resampled::Source) => {
                        uses -= 1;
                        let taken = if uses == 0 { src.take() } else { src.clone() };
                        taken.ok_or_else(|| ImgError::Internal("source already taken".into()))?
                    }
                    None => return Err(ImgError::Internal("rendition not rendered".into())),
                };
                Ok(Rendered {
                    name: plan.name,
                    pixels: orient::oriented(px, o),
                })
            })
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(renders)
}

/// The resized pixels of every rendition before encoding, in display orientation.
pub fn render_raw(
    data: &[u8],
    external: Option<decode::External>,
    specs: &[Spec],
    max_pixels: u64,
) -> Result<Vec<Rendered>> {
    let mut t = Timings::default();
    let (header, src) = load(data, external, max_pixels, 1, &mut t)?;
    render(&header, src, specs, &mut |_, _| Focus::CENTRE, &mut t)
}

/// Places cover crops around the saliency's maximum for each window, computed once per
/// distinct window shape (the blur depends on the window's size relative to the image).
struct AttentionFocus<'a> {
    saliency: &'a Saliency,
    width: f64,
    height: f64,
    seen: Vec<((u64, u64), Focus)>,
    seconds: f64,
}

impl<'a> AttentionFocus<'a> {
    fn new(saliency: &'a Saliency, width: u32, height: u32) -> Self {
        Self {
            saliency,
            width: f64::from(width),
            height: f64::from(height),
            seen: Vec::new(),
            seconds: 0.0,
        }
    }

    fn focus(&mut self, window_w: f64, window_h: f64) -> Focus {
        let (fw, fh) = (window_w / self.width, window_h / self.height);
        let key = (fw.to_bits(), fh.to_bits());
        if let Some(&(_, f)) = self.seen.iter().find(|(k, _)| *k == key) {
            return f;
        }
        let f = timed(&mut self.seconds, || self.saliency.focus(fw, fh));
        self.seen.push((key, f));
        f
    }
}

/// The window the `width` x `height` cover rendition of the image would crop (display
/// pixels), placed by attention.
pub fn attention_window(
    data: &[u8],
    external: Option<decode::External>,
    width: u32,
    height: u32,
    max_pixels: u64,
) -> Result<Crop> {
    let mut t = Timings::default();
    let (header, src) = load(data, external, max_pixels, 1, &mut t)?;
    let (dw, dh) = orient::oriented_size(src.width, src.height, header.orientation);
    let thumb = thumbnail::palette_thumbnail(&src, header.orientation)?;
    let saliency = attention::saliency(&thumb)?;
    let mut at = AttentionFocus::new(&saliency, dw, dh);
    let spec = Spec {
        width,
        height: Some(height),
        cover: true,
    };
    let plans = rendition::plan_with(&[spec], dw, dh, &mut |w, h| at.focus(w, h))?;
    Ok(plans[0].crop)
}

/// The thumbnail the palette is computed from (`thumbnail` says how it is made), in display
/// orientation.
pub fn palette_thumbnail(
    data: &[u8],
    external: Option<decode::External>,
    max_pixels: u64,
) -> Result<Pixels> {
    let mut t = Timings::default();
    let (header, src) = load(data, external, max_pixels, 1, &mut t)?;
    thumbnail::palette_thumbnail(&src, header.orientation)
}

pub fn palette_of(p: &Pixels) -> PaletteResult {
    palette::compute(&p.to_rgba(), p.width, p.height)
}

type Job<'a> = (usize, &'a Rendered, OutFormat);
type Done = (usize, Result<Vec<u8>>, OutFormat, f64);

fn encode_job(job: Job<'_>, opts: &Options) -> Done {
    let (i, r, fmt) = job;
    let start = Instant::now();
    let res = match fmt {
        OutFormat::Jpeg => encode::jpeg_with(&r.pixels, opts.jpeg_quality, opts.jpeg_effort),
        OutFormat::WebP => encode::webp(&r.pixels, opts.webp_quality, opts.webp_method),
    };
    (i, res, fmt, start.elapsed().as_secs_f64())
}

pub fn process(data: &[u8], specs: &[Spec], opts: &Options) -> Result<Processed> {
    process_decoded(data, None, specs, opts)
}

/// `process` on pixels decoded outside the core (`external`), or on `data` itself.
pub fn process_decoded(
    data: &[u8],
    external: Option<decode::External>,
    specs: &[Spec],
    opts: &Options,
) -> Result<Processed> {
    let mut t = Timings::default();
    let threads = opts.threads.clamp(1, 64);
    let (header, src) = load(data, external, opts.max_pixels, threads, &mut t)?;
    let wants_attention =
        opts.focus.is_none() && opts.crop == CropMode::Attention && specs.iter().any(|s| s.cover);
    // From the source, before any rendition exists: the palette depends on the image alone.
    // Attention reads the same thumbnail.
    let thumb = if opts.palette || wants_attention {
        let orientation = header.orientation;
        let slot = if opts.palette {
            &mut t.palette
        } else {
            &mut t.attention
        };
        let thumb = timed(slot, || thumbnail::palette_thumbnail(&src, orientation))?;
        Some(thumb)
    } else {
        None
    };
    let saliency = match &thumb {
        Some(thumb) if wants_attention => {
            Some(timed(&mut t.attention, || attention::saliency(thumb))?)
        }
        _ => None,
    };
    let thumb = thumb.filter(|_| opts.palette);
    let (dw, dh) = orient::oriented_size(src.width, src.height, header.orientation);
    let renders = match (opts.focus, &saliency) {
        (Some(focus), _) => render(&header, src, specs, &mut |_, _| focus, &mut t)?,
        (None, Some(saliency)) => {
            let mut at = AttentionFocus::new(saliency, dw, dh);
            let renders = render(&header, src, specs, &mut |w, h| at.focus(w, h), &mut t)?;
            t.attention += at.seconds;
            renders
        }
        (None, None) => render(&header, src, specs, &mut |_, _| Focus::CENTRE, &mut t)?,
    };

    let mut jobs: Vec<Job<'_>> = renders
        .iter()
        .flat_map(|r| opts.formats.iter().map(move |&f| (r, f)))
        .enumerate()
        .map(|(i, (r, f))| (i, r, f))
        .collect();
    // Biggest (and WebP, the slower encoder) first, so threads finish together.
    jobs.sort_by_key(|&(_, r, f)| std::cmp::Reverse((r.pixels.area(), f == OutFormat::WebP)));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Done>> = Mutex::new(Vec::with_capacity(jobs.len()));
    let work = || {
        let mut mine = Vec::new();
        while let Some(&job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
            mine.push(encode_job(job, opts));
        }
        results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(mine);
    };
    let palette = std::thread::scope(|s| {
        for _ in 1..threads.min(jobs.len().max(1)) {
            s.spawn(work);
        }
        let palette = thumb
            .as_ref()
            .map(|p| timed(&mut t.palette, || palette_of(p)));
        work();
        palette
    });

    let mut results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|d| d.0);
    jobs.sort_by_key(|j| j.0);
    let mut outputs = Vec::with_capacity(results.len());
    for ((_, res, fmt, secs), (_, r, _)) in results.into_iter().zip(&jobs) {
        match fmt {
            OutFormat::Jpeg => t.jpeg += secs,
            OutFormat::WebP => t.webp += secs,
        }
        outputs.push(Output {
            name: r.name.clone(),
            format: fmt,
            width: r.pixels.width,
            height: r.pixels.height,
            data: res?,
        });
    }
    drop(jobs);
    Ok(Processed {
        header,
        outputs,
        palette,
        timings: t,
        rendered: if opts.keep_pixels {
            renders
        } else {
            Vec::new()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            max_pixels: 1 << 24,
            jpeg_quality: 82,
            jpeg_effort: encode::JpegEffort::default(),
            webp_quality: 80.0,
            webp_method: 4,
            formats: vec![OutFormat::Jpeg],
            threads: 1,
            palette: true,
            focus: None,
            crop: CropMode::Attention,
            keep_pixels: false,
        }
    }

    fn spec(width: u32, height: Option<u32>, cover: bool) -> Spec {
        Spec {
            width,
            height,
            cover,
        }
    }

    fn photo(width: u32, height: u32) -> Vec<u8> {
        let data = (0..width * height * 3)
            .map(|i| ((i % 251) ^ (i / 1999)) as u8)
            .collect();
        let px = Pixels {
            width,
            height,
            channels: 3,
            data,
        };
        encode::jpeg(&px, 90).unwrap()
    }

    /// A grey 600x300 PNG with a red, striped square centred at x = 480.
    fn subject_right() -> Vec<u8> {
        let (w, h) = (600u32, 300u32);
        let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([110, 115, 125]));
        for y in 110..190 {
            for x in 440..520 {
                let on = (x / 8) % 2 == 0;
                img.put_pixel(
                    x,
                    y,
                    image::Rgb(if on { [230, 30, 40] } else { [250, 240, 230] }),
                );
            }
        }
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    }

    #[test]
    fn covers_go_to_the_focus_else_the_subject_else_the_centre() {
        let png = subject_right();
        let window = attention_window(&png, None, 100, 100, 1 << 24).unwrap();
        // A 300 px square window around x = 480, clamped at the right edge.
        assert_eq!(
            (window.left, window.width, window.height),
            (300.0, 300.0, 300.0)
        );
        let specs = [spec(100, Some(100), true)];
        let opts = Options {
            palette: false,
            ..options()
        };
        let bytes = |focus: Option<Focus>, crop: CropMode| {
            let o = Options {
                focus,
                crop,
                ..opts.clone()
            };
            process(&png, &specs, &o).unwrap().outputs.remove(0).data
        };
        let right = Some(Focus::new(1.0, 0.5).unwrap());
        let centre = Some(Focus::CENTRE);
        assert_eq!(
            bytes(None, CropMode::Attention),
            bytes(right, CropMode::Centre)
        );
        assert_eq!(
            bytes(None, CropMode::Centre),
            bytes(centre, CropMode::Attention)
        );
        assert_ne!(
            bytes(None, CropMode::Attention),
            bytes(None, CropMode::Centre)
        );
        assert!(CropMode::parse("entropy").is_err());
    }

    #[test]
    fn a_full_width_cover_is_resampled_from_a_smaller_rendition() {
        // (320 / 525) * 525 > 320: the crop scaled onto w320 used to end past its edge, and
        // fast_image_resize refused it.
        let specs = [spec(320, None, false), spec(300, Some(100), true)];
        let done = process(&photo(525, 400), &specs, &options()).unwrap();
        let sizes: Vec<_> = done
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), o.width, o.height))
            .collect();
        assert_eq!(sizes, [("w320", 320, 244), ("300x100-cover", 300, 100)]);
    }

    #[test]
    fn the_palette_is_the_same_whatever_the_renditions() {
        let jpg = photo(1500, 1000);
        let sets = [
            vec![
                spec(320, None, false),
                spec(640, None, false),
                spec(1280, None, false),
                spec(1920, None, false),
                spec(3840, None, false),
            ],
            vec![spec(320, None, false)],
            vec![spec(3840, None, false)],
            vec![spec(1080, Some(1920), true)],
            vec![spec(1920, Some(1080), false), spec(100, Some(100), true)],
        ];
        let opts = Options {
            formats: Vec::new(),
            ..options()
        };
        let alone = palette_of(&palette_thumbnail(&jpg, None, 1 << 24).unwrap());
        for specs in sets {
            let palette = process(&jpg, &specs, &opts).unwrap().palette;
            assert_eq!(palette.as_ref(), Some(&alone), "{specs:?}");
        }
    }
}
