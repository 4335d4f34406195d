#!/usr/bin/env bash
# CI's check of the deployable wheel (issue 16): builds it exactly as scripts/deploy.sh does
# (scripts/lib/build_wheel.sh: maturin + zig, manylinux_2_28, no Docker), checks its tag and
# the glibc versions it needs, installs it with `pip install --only-binary :all:` into a fresh
# venv, and renders photos of the corpus (or examples/) with that install, outside the repo.
#
#   bash scripts/ci_wheel.sh [OUT_DIR]      # default dist/
#
# The Rust build shares the repository's cargo target directory and cargo's registry cache with
# the rest of CI (a second run only relinks what changed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/wheel.env
. "$ROOT/scripts/lib/wheel.env"
out=${1:-$ROOT/dist}
PYTHON=${PYTHON:-python3}
CORPUS=${IMGPIPE_CORPUS:-$ROOT/../shared/corpus}
work=$(mktemp -d "${TMPDIR:-/tmp}/imgpipe-ci-wheel.XXXXXXXX")
trap 'rm -rf "$work"' EXIT

started=$SECONDS
wheel=$(bash "$ROOT/scripts/lib/build_wheel.sh" "$out" | tail -n 1)
built=$((SECONDS - started))
name=$(basename "$wheel")
size=$(wc -c <"$wheel")
printf 'ci_wheel: built %s (%d bytes) in %d s\n' "$name" "$size" "$built"
case $name in
  imgpipe-*-"$WHEEL_TAG".whl) ;;
  *) echo "ci_wheel: $name does not carry $WHEEL_TAG" >&2; exit 1 ;;
esac

# manylinux_2_28: no symbol newer than GLIBC_2.28 (Cloud Functions' python311 and
# python:3.11-slim have newer glibcs; older hosts are what the tag promises).
"$PYTHON" - "$wheel" <<'PY'
import re, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
libs = [n for n in wheel.namelist() if n.endswith(".so") or ".so." in n]
assert libs, "no shared library in the wheel"
for lib in libs:
    found = re.findall(rb"GLIBC_2\.(\d+)(?:\.(\d+))?", wheel.read(lib))
    versions = {(int(minor), int(patch or 0)) for minor, patch in found}
    newest = max(versions, default=(0, 0))
    print(f"ci_wheel: {lib} needs glibc 2.{newest[0]}" + (f".{newest[1]}" if newest[1] else ""))
    assert newest <= (28, 0), f"{lib} needs GLIBC_2.{newest[0]}, newer than manylinux_2_28 allows"
PY

"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary :all: "$wheel"

# The photos: up to two of each format the corpus expects to decode (MANIFEST.tsv: expect =
# ok; HEIF and AVIF, still "stretch" there, decode since issue 13), else the examples.
mkdir "$work/photos"
if [ -f "$CORPUS/MANIFEST.tsv" ]; then
  awk -F'\t' 'NR > 1 && ($9 == "ok" || $5 == "HEIF" || $5 == "AVIF") && seen[$5]++ < 2 {print $1}' \
    "$CORPUS/MANIFEST.tsv" | while read -r file; do
    cp "$CORPUS/$file" "$work/photos/"
  done
fi
[ -n "$(ls -A "$work/photos")" ] || cp "$ROOT"/examples/* "$work/photos/"
count=$(find "$work/photos" -type f | wc -l)

# Outside the repository, so that nothing but the installed wheel can be imported.
cd "$work"
"$work/venv/bin/python" -c 'import imgpipe, imgpipe._imgcore, sys; assert "/venv/" in imgpipe._imgcore.__file__, imgpipe._imgcore.__file__'
# HEIC decodes with the libheif that pi-heif's wheel carries, never a system one.
if ldconfig -p 2>/dev/null | grep -q 'libheif\.so'; then
  echo "ci_wheel: note: this host has a system libheif; the check below pins the wheel's" >&2
fi
"$work/venv/bin/python" - "$CORPUS/heic_iphone12pro_car.heic" <<'PY'
import pathlib, sys
from imgpipe import foreign
path = pathlib.Path(sys.argv[1])
if path.is_file():
    px = foreign.decode(path.read_bytes(), "heif")
    maps = pathlib.Path("/proc/self/maps").read_text()
    libheif = sorted({line.split()[-1] for line in maps.splitlines() if "libheif" in line})
    assert libheif and all("/venv/" in lib for lib in libheif), libheif
    print(f"ci_wheel: decoded {path.name} ({px.width}x{px.height}) with {libheif[0]}")
PY
IMGPIPE_FORMATS=jpeg,webp,avif "$work/venv/bin/imgpipe" process photos --out out \
  --report report.json >/dev/null
"$work/venv/bin/python" - "$count" <<'PY'
import json, pathlib, sys
report = json.load(open("report.json"))
results = report["results"]
assert len(results) == int(sys.argv[1]), results
bad = [r for r in results if r["status"] != "done"]
assert not bad, bad
for r in results:
    folder = pathlib.Path("out") / r["image_id"]
    meta = json.loads((folder / "metadata.json").read_text())
    files = [folder / rendition["file"] for rendition in meta["renditions"]]
    assert files and all(f.stat().st_size > 0 for f in files), folder
    assert {rendition["format"] for rendition in meta["renditions"]} == {"jpeg", "webp", "avif"}
print(f"ci_wheel: the installed wheel rendered {len(results)} photos: "
      + ", ".join(pathlib.Path(r["path"]).name for r in results))
PY
