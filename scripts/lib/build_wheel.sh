#!/usr/bin/env bash
# Builds imgpipe's deployable wheel (Rust core, abi3 for CPython >= 3.11, manylinux_2_28
# x86_64) and prints its path as the last line of stdout.
#
#   bash scripts/lib/build_wheel.sh OUT_DIR                 # any recent x86_64 Linux, no Docker
#   bash scripts/lib/build_wheel.sh --in-container OUT_DIR  # inside ghcr.io/pyo3/maturin
#
# The first form is what scripts/deploy.sh runs when given no wheel, and what CI runs
# (scripts/ci_wheel.sh): maturin links with zig against glibc 2.28's symbols, so a Debian 12
# or Ubuntu 24.04 machine builds a wheel that older runtimes accept. maturin and PyPI's
# `ziglang` live in a build venv of their own (IMGPIPE_BUILD_VENV, default
# target/imgpipe-build-venv), installed there when missing. C libraries that imgcore bundles
# (lcms2, libwebp, and the codecs it may add) are compiled by their crates through `cc`, which
# maturin points at zig too: they come along in the same wheel.
# The second form is cloudbuild.yaml's: the manylinux container's own toolchain, no zig.
# Both produce the same tag ($WHEEL_TAG in scripts/lib/wheel.env) and check it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/lib/wheel.env
. "$ROOT/scripts/lib/wheel.env"

mode=zig
if [ "${1:-}" = --in-container ]; then
  mode=container
  shift
fi
out=${1:?usage: build_wheel.sh [--in-container] OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

fail() {
  printf 'build_wheel: %s\n' "$*" >&2
  exit 1
}

if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
  fail "builds the x86_64 Linux wheel on x86_64 Linux only (this is $(uname -s) $(uname -m)); use cloudbuild.yaml, or pass a built wheel to deploy.sh"
fi

# The Rust toolchain: rustup puts it in ~/.cargo/bin, which a fresh shell may not have on PATH.
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  PATH=$HOME/.cargo/bin:$PATH
fi
if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
  fail "$(
    cat <<TXT
the Rust toolchain is missing (no cargo on PATH), and the wheel's core is Rust.
  Install it with rustup (https://rustup.rs), then open a new shell:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  or give deploy.sh a wheel built elsewhere (cloudbuild.yaml builds one in Cloud Build):
    bash scripts/deploy.sh dist/imgpipe-0.1.0-$WHEEL_TAG.whl
TXT
  )"
fi
rust=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$RUST_MIN" "${rust%%-*}" | sort -V | head -n 1)" != "$RUST_MIN" ]; then
  fail "rustc $rust is older than $RUST_MIN, which imgcore's dependencies need: rustup update stable"
fi

args=(build --release --out "$out" --compatibility "$WHEEL_COMPAT")
before=$(mktemp)  # its mtime marks the start of the build
trap 'rm -f "$before"' EXIT
sleep 1

if [ "$mode" = zig ]; then
  venv=${IMGPIPE_BUILD_VENV:-$ROOT/target/imgpipe-build-venv}
  python=${PYTHON:-python3}
  want="maturin==$MATURIN_VERSION ziglang==$ZIGLANG_VERSION"
  if [ "$(cat "$venv/.imgpipe-build" 2>/dev/null)" != "$want" ]; then
    printf 'build_wheel: installing %s into %s\n' "$want" "$venv" >&2
    command -v "$python" >/dev/null || fail "$python is missing (the build venv needs Python >= 3.9)"
    rm -rf "$venv"
    "$python" -m venv "$venv" || fail "could not create the build venv $venv (Debian/Ubuntu: apt-get install python3-venv)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
      "maturin==$MATURIN_VERSION" "ziglang==$ZIGLANG_VERSION" \
      || fail "could not install $want from PyPI into $venv"
    printf '%s' "$want" >"$venv/.imgpipe-build"
  fi
  export PATH=$venv/bin:$PATH
  args+=(--zig --interpreter "$venv/bin/python")
else
  # The image's /opt/python interpreters: maturin picks them itself, one abi3 wheel for all.
  command -v maturin >/dev/null || fail "no maturin on PATH: --in-container runs in ghcr.io/pyo3/maturin"
fi

printf 'build_wheel: maturin %s (%s)\n' "${args[*]}" "$(maturin --version)" >&2
(cd "$ROOT" && maturin "${args[@]}") >&2 || fail "maturin build failed (its output is above)"

wheel=""
for file in "$out"/imgpipe-*.whl; do
  [ -f "$file" ] || continue
  [ "$file" -nt "$before" ] && wheel=$file  # written by this build
done
[ -n "$wheel" ] || fail "maturin wrote no wheel to $out"
case $(basename "$wheel") in
  imgpipe-*-"$WHEEL_TAG".whl) ;;
  *) fail "$(basename "$wheel") does not have the tag $WHEEL_TAG (scripts/lib/wheel.env)" ;;
esac
printf '%s\n' "$wheel"
