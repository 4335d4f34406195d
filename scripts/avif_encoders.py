#!/usr/bin/env python3
"""The AV1 encoders libavif can drive, on the same renditions at the same settings: time,
bytes and SSIM for each. This is how imgpipe's AVIF encoder was chosen (issue 13).

Pillow's own libavif carries only libaom; pillow-avif-plugin's carries libaom, rav1e and
SVT-AV1 in one build, so every candidate runs through the same libavif, the same YUV
conversion and the same quality scale. Run it in a venv of its own (the plugin replaces
Pillow's AVIF support):

    python3 -m venv /tmp/avif && /tmp/avif/bin/pip install "pillow<11.3" pillow-avif-plugin numpy
    /tmp/avif/bin/python scripts/avif_encoders.py [--quality 60] [--speed 6] [IMAGES...]

Each encode runs on one thread (as imgpipe runs them, one rendition per core); times are CPU
seconds of this process, best of `--repeat`.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
import pillow_avif  # noqa: F401  (registers the AVIF plugin with its three encoders)
from PIL import Image, ImageOps

WIDTHS = (320, 640, 1280, 1920)
DEFAULT = ("baseline_mongolia.jpeg", "photo_nexus5x_hochuferweg.jpg", "Landscape_3.jpg")
CODECS = ("aom", "rav1e", "svt")


def renditions(path: Path) -> list[Image.Image]:
    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    out = []
    for w in WIDTHS:
        if w >= im.width:
            out.append(im)
            break
        out.append(im.resize((w, round(im.height * w / im.width)), Image.Resampling.LANCZOS))
    return out


def ssim(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean luma SSIM, 11-tap sigma-1.5 Gaussian window (Wang et al. 2004)."""
    g = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    g /= g.sum()

    def blur(t: np.ndarray) -> np.ndarray:
        for axis in (0, 1):
            pad = [(5, 5) if a == axis else (0, 0) for a in (0, 1)]
            p = np.pad(t, pad, mode="reflect")
            n = t.shape[axis]
            t = sum(w * p.take(range(i, i + n), axis=axis) for i, w in enumerate(g))
        return t

    def luma(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]

    x, y = luma(ref), luma(got)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(np.mean(s))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="*")
    ap.add_argument("--quality", type=int, default=60)
    ap.add_argument("--speed", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    corpus = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
    paths = [Path(p) for p in args.images] or [corpus / p for p in DEFAULT]
    frames = [r for p in paths for r in renditions(p)]
    pixels = sum(f.width * f.height for f in frames)
    print(
        f"{len(frames)} renditions of {len(paths)} photos ({pixels / 1e6:.1f} MP), "
        f"quality {args.quality}, speed {args.speed}, 1 thread each"
    )
    print(f"{'encoder':<8}{'CPU s':>8}{'bytes':>11}{'SSIM':>9}")
    rows = {}
    for codec in CODECS:
        best = float("inf")
        size, scores = 0, []
        for round_ in range(args.repeat):
            spent, size, scores = 0.0, 0, []
            for f in frames:
                buf = io.BytesIO()
                t0 = time.process_time()
                f.save(
                    buf, "AVIF", quality=args.quality, speed=args.speed, codec=codec, max_threads=1
                )
                spent += time.process_time() - t0
                size += len(buf.getvalue())
                if round_ == 0:
                    got = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
                    scores.append(ssim(np.asarray(f), got))
            best = min(best, spent)
            if round_ == 0:
                kept = (size, statistics.fmean(scores))
        rows[codec] = (best, *kept)
        print(f"{codec:<8}{best:8.2f}{kept[0]:11d}{kept[1]:9.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
