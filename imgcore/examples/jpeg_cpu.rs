//! CPU time of the JPEG encoder on raw RGB files (`NAME_WxH.rgb`), the least of `N` runs
//! per file, summed, measured on the thread's own clock so that other load does not count.
//!
//!     cargo run --release --no-default-features --example jpeg_cpu -- DIR [N] [fast|trellis]

use std::time::Duration;

use _imgcore::encode::{jpeg_with, JpegEffort};
use _imgcore::image::Pixels;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: jpeg_cpu DIR [N]");
    let n: usize = args.next().map_or(5, |v| v.parse().expect("N"));
    let efforts = match args.next().as_deref() {
        Some("fast") => vec![JpegEffort::Fast],
        Some("trellis") => vec![JpegEffort::Trellis],
        _ => vec![JpegEffort::Fast, JpegEffort::Trellis],
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("DIR")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rgb"))
        .collect();
    files.sort();
    let mut images = Vec::new();
    for f in &files {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        let dims = stem.rsplit('_').next().unwrap();
        let (w, h) = dims.split_once('x').expect("NAME_WxH.rgb");
        images.push(Pixels {
            width: w.parse().unwrap(),
            height: h.parse().unwrap(),
            channels: 3,
            data: std::fs::read(f).unwrap(),
        });
    }
    for effort in efforts {
        let (mut total, mut bytes) = (Duration::ZERO, 0usize);
        for p in &images {
            let (mut best, mut size) = (Duration::MAX, 0);
            for _ in 0..n {
                let t = thread_cpu();
                let out = jpeg_with(p, 82, effort).unwrap();
                best = best.min(thread_cpu() - t);
                size = out.len();
            }
            total += best;
            bytes += size;
        }
        println!(
            "{effort:?}: {:.1} ms, {bytes} bytes over {} images",
            total.as_secs_f64() * 1e3,
            images.len()
        );
    }
}
