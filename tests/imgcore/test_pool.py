"""The buffer pool hands an image memory that held other images' pixels: an image processed
after others must come out byte for byte as it does in a fresh process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import pytest
from _reference import ALL_SPECS, DEFAULT_RENDITIONS, entry

from imgpipe import _imgcore

# A JPEG with an EXIF rotation (its pixels are moved into new buffers) and an RGBA PNG.
TARGETS = ["photo_canon_sx60_orient6.jpg", "png_rgba_blackbug.png"]
# Larger and differently sized images, so the pool is warm with other pixels and other
# size classes when a target comes.
OTHERS = ["photo_nexus5x_hochuferweg.jpg", "webp_lossy.webp"]

# The same digest of everything imgcore returns, computed in a fresh interpreter.
SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from imgpipe import _imgcore

    data = open(sys.argv[1], "rb").read()
    specs = [tuple(s) for s in json.loads(sys.argv[2])]
    res = _imgcore.process(data, specs)
    raw = _imgcore.render_raw(data, specs)
    out = {f"{o.name}.{o.format}": hashlib.sha256(o.data).hexdigest() for o in res.outputs}
    out.update({f"{r.name}.raw": hashlib.sha256(r.pixels).hexdigest() for r in raw})
    p = res.palette
    out["palette"] = repr((p.colors, p.seed, p.thumbhash))
    print(json.dumps(out))
    """
)


def digests(data: bytes) -> dict[str, str]:
    res = _imgcore.process(data, ALL_SPECS)
    raw = _imgcore.render_raw(data, ALL_SPECS)
    out = {f"{o.name}.{o.format}": hashlib.sha256(o.data).hexdigest() for o in res.outputs}
    out.update({f"{r.name}.raw": hashlib.sha256(r.pixels).hexdigest() for r in raw})
    p = res.palette
    assert p is not None
    out["palette"] = repr((p.colors, p.seed, p.thumbhash))
    return out


def fresh_digests(name: str) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(entry(name).path), json.dumps(ALL_SPECS)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def warm_pool() -> None:
    for other in OTHERS:
        _imgcore.process(entry(other).data(), DEFAULT_RENDITIONS, formats=["jpeg"])


@pytest.mark.usefixtures("warm_pool")
@pytest.mark.parametrize("name", TARGETS)
def test_an_image_after_others_gives_the_bytes_of_a_fresh_process(name: str) -> None:
    want = fresh_digests(name)
    got = digests(entry(name).data())
    assert got.keys() == want.keys()
    differ = sorted(k for k in want if got[k] != want[k])
    assert differ == [], f"differs from a fresh process: {differ}"
