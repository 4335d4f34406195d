"""process() releases the GIL: another Python thread keeps running during the call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from _reference import DEFAULT_RENDITIONS, entry

from imgpipe import _imgcore


def _progress_during(call: Callable[[], object]) -> tuple[object, int, float]:
    """Runs `call` while another thread records timestamps; returns its result, how many
    stamps fell in the middle half of the call, and how long it took. A call that held the GIL
    would let the other thread run only at its edges (one switch interval each side)."""
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
        result = call()
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    lo, hi = t0 + (t1 - t0) * 0.25, t0 + (t1 - t0) * 0.75
    return result, sum(1 for s in stamps if lo <= s <= hi), t1 - t0


def test_process_releases_gil() -> None:
    data = entry("photo_nexus5x_hochuferweg.jpg").data()
    res, during, took = _progress_during(lambda: _imgcore.process(data, DEFAULT_RENDITIONS))
    assert isinstance(res, _imgcore.Processed)
    assert len(res.outputs) == 10
    assert during > 0, f"counter did not advance during process() ({took:.2f} s call)"


def test_render_raw_releases_gil() -> None:
    data = entry("photo_nexus5x_hochuferweg.jpg").data()
    raws, during, took = _progress_during(lambda: _imgcore.render_raw(data, [(1920, None, False)]))
    assert isinstance(raws, list)
    assert len(raws) == 1
    assert during > 0, f"no progress during render_raw ({took:.2f} s)"
