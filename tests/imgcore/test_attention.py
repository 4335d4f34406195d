"""Cover crops placed by attention (issue 13), against libvips' own smartcrop through pyvips.

Like with like: our cover crop is the largest box-shaped window of the source, at source scale,
and `attention_window` returns it. libvips' attention resamples its input to 32 x 32 whatever its
size and blurs with a sigma that depends only on the window's fraction of the image, so calling
`smartcrop` on the source with that window's size in source pixels is the same computation as
thumbnailing to cover the box and then smartcropping the box (what sharp does), and it answers in
our coordinates. Both sides read the same pixels: Pillow's oriented sRGB view of the file.
"""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import dataclass

import _core as core
import numpy as np
import pytest
import pyvips
from _reference import Entry, entries, entry, open_reference, psnr
from PIL import Image

from imgpipe import _imgcore

# Box aspects, as cover specs: portrait phone, square, 4:5, cinema, banner.
BOXES = [(1080, 1920), (1000, 1000), (800, 1000), (2100, 900), (1500, 500)]
MIN_IOU = 0.6
MIN_SHARE = 0.8

Window = tuple[float, float, float, float]  # left, top, width, height


def iou(a: Window, b: Window) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def vips_window(rgb: np.ndarray, width: float, height: float) -> Window:
    """libvips' attention smartcrop of a `width` x `height` window of these pixels."""
    im = pyvips.Image.new_from_array(np.ascontiguousarray(rgb)).copy(interpretation="srgb")
    w, h = round(width), round(height)
    out = im.smartcrop(w, h, interesting="attention")
    return (float(-out.xoffset), float(-out.yoffset), float(w), float(h))


@dataclass(frozen=True)
class Case:
    label: str
    ours: Window
    theirs: Window

    @property
    def iou(self) -> float:
        return iou(self.ours, self.theirs)


def compare(label: str, data: bytes, rgb: np.ndarray) -> list[Case]:
    cases = []
    h, w = rgb.shape[:2]
    for bw, bh in BOXES:
        ours = core.attention_window(data, bw, bh)
        if ours[2] >= w - 1 and ours[3] >= h - 1:
            continue  # the box has the image's shape: nothing to place
        cases.append(Case(f"{label} {bw}x{bh}", ours, vips_window(rgb, ours[2], ours[3])))
    return cases


def report(kind: str, cases: list[Case]) -> tuple[float, float, float]:
    ious = [c.iou for c in cases]
    share = sum(i >= MIN_IOU for i in ious) / len(ious)
    print(
        f"\n{kind}: {len(ious)} windows, IoU vs libvips {pyvips.version(0)}.{pyvips.version(1)}: "
        f"mean {statistics.mean(ious):.3f}, min {min(ious):.3f}, share >= {MIN_IOU}: {share:.1%}"
    )
    for c in sorted(cases, key=lambda c: c.iou)[:5]:
        print(f"  lowest: {c.label}: {c.iou:.3f} ours {c.ours} libvips {c.theirs}")
    return statistics.mean(ious), min(ious), share


def photos() -> list[Entry]:
    """The decodable corpus images that are photos or pictures worth a crop (not the 32 px
    PngSuite tiles, the 80 px animations or the 99.6 MP solid colour)."""
    return [
        e
        for e in entries("ok")
        if e.width and e.height and 100_000 <= e.width * e.height <= 20_000_000
    ]


def test_corpus_windows_overlap_libvips() -> None:
    cases: list[Case] = []
    for e in photos():
        rgb = np.asarray(open_reference(e.data()))
        cases += compare(e.file, e.data(), rgb)
    assert len(cases) >= 40
    _, _, share = report("corpus", cases)
    assert share >= MIN_SHARE


# --------------------------------------------------------------------------- synthetic


def background(w: int, h: int) -> np.ndarray:
    """A smooth, dull blue-grey gradient: no edges, no skin, little saturation."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    t = (x / w + y / h) / 2
    base = np.stack([90 + 40 * t, 100 + 40 * t, 120 + 30 * t], axis=-1)
    return base


def subject(rgb: np.ndarray, kind: str, cx: float, cy: float, r: float) -> None:
    """Paints a disc of radius r (pixels) centred on (cx, cy) (pixels), in place."""
    h, w = rgb.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    inside = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    if kind == "saturated":
        colour = np.array([225.0, 30.0, 40.0])
        rgb[inside] = colour
    elif kind == "skin":
        rgb[inside] = np.array([226.0, 170.0, 135.0])
    else:  # edgy: black and white stripes a fifth of the radius wide
        stripes = ((x + y) // max(r / 5, 2)) % 2 == 0
        rgb[inside & stripes] = 245.0
        rgb[inside & ~stripes] = 15.0


SIZES = [(1500, 1000), (1000, 1500)]
POSITIONS = [(0.2, 0.3), (0.78, 0.7), (0.12, 0.85), (0.62, 0.18)]
KINDS = ["saturated", "skin", "edgy"]


def synthetic() -> list[tuple[str, bytes, np.ndarray, tuple[float, float, float, float]]]:
    out = []
    for w, h in SIZES:
        r = 0.06 * max(w, h)
        for kind in KINDS:
            for fx, fy in POSITIONS:
                rgb = background(w, h)
                cx, cy = fx * w, fy * h
                subject(rgb, kind, cx, cy, r)
                px = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(px, "RGB").save(buf, "PNG")
                box = (cx - r, cy - r, 2 * r, 2 * r)
                out.append((f"{w}x{h} {kind} at ({fx}, {fy})", buf.getvalue(), px, box))
    return out


def inside(box: Window, window: Window) -> bool:
    return (
        box[0] >= window[0] - 0.5
        and box[1] >= window[1] - 0.5
        and box[0] + box[2] <= window[0] + window[2] + 0.5
        and box[1] + box[3] <= window[1] + window[3] + 0.5
    )


def test_synthetic_subjects_are_inside_and_windows_overlap_libvips() -> None:
    cases: list[Case] = []
    outside: list[str] = []
    for label, data, px, box in synthetic():
        for c in compare(label, data, px):
            cases.append(c)
            if not inside(box, c.ours):
                outside.append(f"{c.label}: subject {box} not inside {c.ours}")
    _, _, share = report("synthetic", cases)
    print(f"synthetic: subject inside our window in {len(cases) - len(outside)}/{len(cases)}")
    assert outside == []
    assert share >= MIN_SHARE


# --------------------------------------------------------------------------- API


def test_process_crops_the_attention_window_by_default() -> None:
    e = entry("baseline_mongolia.jpeg")
    data = e.data()
    ref = open_reference(data).convert("RGB")
    left, top, w, h = _imgcore.attention_window(data, 200, 300)
    expected = np.asarray(
        ref.resize((200, 300), Image.Resampling.LANCZOS, box=(left, top, left + w, top + h))
    )
    default = _imgcore.process(data, [(200, 300, True)], palette=False, formats=["webp"])
    explicit = _imgcore.process(
        data, [(200, 300, True)], palette=False, formats=["webp"], crop="attention"
    )
    for done in (default, explicit):
        [out] = done.outputs
        got = np.asarray(Image.open(io.BytesIO(out.data)).convert("RGB"))
        assert psnr(got, expected) > 30
    assert default.outputs[0].data == explicit.outputs[0].data


def test_centre_and_focus_take_precedence_as_documented() -> None:
    data = entry("Landscape_1.jpg").data()
    specs: list[tuple[int, int | None, bool]] = [(300, 600, True)]

    def cover(focus: tuple[float, float] | None = None, crop: str = "attention") -> bytes:
        done = _imgcore.process(
            data, specs, palette=False, formats=["jpeg"], focus=focus, crop=crop
        )
        return done.outputs[0].data

    centred = cover(focus=(0.5, 0.5))
    assert cover(crop="centre") == centred
    # An explicit focal point wins over either strategy.
    assert cover(focus=(0.5, 0.5), crop="attention") == centred
    assert cover(focus=(0.1, 0.5), crop="centre") == cover(focus=(0.1, 0.5))
    # On this photo attention does not pick the centre (else the test proves nothing).
    left, _, w, _ = _imgcore.attention_window(data, 300, 600)
    assert abs(left + w / 2 - 900) > 50
    assert cover() != centred


def test_an_unknown_crop_is_refused() -> None:
    data = entry("Landscape_1.jpg").data()
    for bad in ("entropy", "center", ""):
        with pytest.raises(ValueError, match="crop"):
            _imgcore.process(data, [(200, 200, True)], crop=bad)
    with pytest.raises(ValueError):
        _imgcore.attention_window(data, 0, 100)


def test_windows_are_the_cover_geometry() -> None:
    """The window has the box's aspect at source scale and lies inside the display image."""
    for name in ("Landscape_6.jpg", "progressive_tablets.jpg", "png_rgba_blackbug.png"):
        e = entry(name)
        dw, dh = e.display_size
        for bw, bh in [*BOXES, (20000, 10000)]:
            left, top, w, h = _imgcore.attention_window(e.data(), bw, bh)
            assert left >= 0 and top >= 0 and left + w <= dw and top + h <= dh
            assert max(w / dw, h / dh) == pytest.approx(1.0)
            assert w / h == pytest.approx(bw / bh, rel=0.01)


def test_attention_takes_milliseconds() -> None:
    e = entry("photo_nexus5x_hochuferweg.jpg")  # 12 MP
    data = e.data()
    specs: list[tuple[int, int | None, bool]] = [(1080, 1920, True), (1000, 1000, True)]
    alone, with_palette = [], []
    for _ in range(3):
        alone.append(_imgcore.process(data, specs, palette=False, formats=[]).timings["attention"])
        with_palette.append(_imgcore.process(data, specs, formats=[]).timings["attention"])
    start = time.perf_counter()
    _imgcore.process(data, specs, palette=False, formats=[], crop="centre")
    centre = time.perf_counter() - start
    print(
        f"\nattention on a 12 MP photo, 2 cover aspects: {min(alone) * 1e3:.2f} ms with its "
        f"thumbnail, {min(with_palette) * 1e3:.3f} ms on the palette's thumbnail "
        f"(whole process with crop='centre': {centre * 1e3:.0f} ms)"
    )
    assert min(alone) < 0.05
    assert min(with_palette) < 0.005
