"""process() releases the GIL: another Python thread keeps running during the call."""

from __future__ import annotations

import threading
import time

from _reference import DEFAULT_RENDITIONS, entry

from imgpipe import _imgcore


def test_process_releases_gil() -> None:
    data = entry("photo_nexus5x_hochuferweg.jpg").data()
    stamps: list[float] = []
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        time.sleep(0.05)
        t0 = time.perf_counter()
        res = _imgcore.process(data, DEFAULT_RENDITIONS)
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    assert len(res.outputs) == 10
    # A call that held the GIL would let the counter thread run only at its edges (one switch
    # interval each side); count increments in the middle half of the call instead.
    lo, hi = t0 + (t1 - t0) * 0.25, t0 + (t1 - t0) * 0.75
    during = sum(1 for s in stamps if lo <= s <= hi)
    assert during > 0, f"counter did not advance during process() ({t1 - t0:.2f} s call)"


def test_render_raw_releases_gil() -> None:
    data = entry("photo_nexus5x_hochuferweg.jpg").data()
    stamps: list[float] = []
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        time.sleep(0.05)
        t0 = time.perf_counter()
        raws = _imgcore.render_raw(data, [(1920, None, False)])
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    assert len(raws) == 1
    lo, hi = t0 + (t1 - t0) * 0.25, t0 + (t1 - t0) * 0.75
    assert any(lo <= s <= hi for s in stamps), f"no progress during render_raw ({t1 - t0:.2f} s)"
