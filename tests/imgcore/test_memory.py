"""Peak memory: the 99.6 MP JPEG with the default renditions stays under 1.5 GiB RSS."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from _reference import entry

LIMIT_KIB = int(1.5 * 1024 * 1024)

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from imgpipe import _imgcore

    def peak_kib():
        # VmHWM: the high-water mark of this address space, which starts at exec. (ru_maxrss
        # would also count the parent's pages the child held between fork and exec.)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc/self/status")

    data = open(sys.argv[1], "rb").read()
    specs = [(320, None, False), (640, None, False), (1280, None, False),
             (1920, None, False), (3840, None, False)]
    res = _imgcore.process(data, specs)
    outs = sorted((o.name, o.format, o.width, o.height) for o in res.outputs)
    print(json.dumps({"maxrss_kib": peak_kib(), "outputs": outs}))
    """
)


def test_huge_jpeg_peak_rss() -> None:
    path = entry("huge_9643x10328.jpg").path
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    names = {o[0] for o in result["outputs"]}
    assert names == {"w320", "w640", "w1280", "w1920", "w3840"}
    assert len(result["outputs"]) == 10
    rss = result["maxrss_kib"]
    assert rss < LIMIT_KIB, f"peak RSS {rss / 1024:.0f} MiB >= 1536 MiB"
