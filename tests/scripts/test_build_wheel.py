"""scripts/lib/build_wheel.sh's refusals (the full build is CI's own step: scripts/ci_wheel.sh
builds the wheel exactly this way, installs it and renders photos with it): a machine without
the Rust toolchain, or with one too old, is told what to install; deploy.sh then stops before
it changes anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scriptsenv import ROOT, Fake

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def build(tmp_path: Path, path: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": path, "HOME": str(home), "TMPDIR": str(tmp_path)}
    return subprocess.run(
        ["bash", str(ROOT / "scripts/lib/build_wheel.sh"), str(tmp_path / "dist")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def no_cargo_path(tmp_path: Path) -> str:
    """The system PATH, minus any directory that holds cargo or rustc."""
    keep = [
        d
        for d in SYSTEM_PATH.split(":")
        if not (Path(d, "cargo").exists() or Path(d, "rustc").exists())
    ]
    return ":".join(keep)


def test_without_cargo_the_message_names_what_to_install(tmp_path: Path) -> None:
    done = build(tmp_path, no_cargo_path(tmp_path))
    assert done.returncode == 1
    assert "the Rust toolchain is missing (no cargo on PATH)" in done.stderr
    assert "https://sh.rustup.rs" in done.stderr
    assert "cloudbuild.yaml" in done.stderr  # the way without a local toolchain
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


def test_an_old_rust_is_named(tmp_path: Path) -> None:
    tools = tmp_path / "old-rust"
    tools.mkdir()
    for tool, output in (("cargo", "cargo 1.70.0"), ("rustc", "rustc 1.70.0 (90c541806 2023)")):
        script = tools / tool
        script.write_text(f"#!/bin/sh\necho '{output}'\n")
        script.chmod(0o755)
    done = build(tmp_path, f"{tools}:{no_cargo_path(tmp_path)}")
    assert done.returncode == 1
    assert "rustc 1.70.0 is older than 1.85" in done.stderr and "rustup update" in done.stderr


def test_rustup_cargo_off_path_is_found(tmp_path: Path) -> None:
    """A fresh shell after rustup may not have ~/.cargo/bin on PATH: the script looks there."""
    cargo_bin = tmp_path / "home/.cargo/bin"
    cargo_bin.mkdir(parents=True)
    for tool, output in (("cargo", "cargo 1.70.0"), ("rustc", "rustc 1.70.0")):
        script = cargo_bin / tool
        script.write_text(f"#!/bin/sh\necho '{output}'\n")
        script.chmod(0o755)
    done = build(tmp_path, no_cargo_path(tmp_path))
    assert done.returncode == 1
    assert "rustc 1.70.0 is older" in done.stderr  # it found ~/.cargo/bin's rustc


def test_deploy_without_a_wheel_or_cargo_changes_nothing(fake: Fake, tmp_path: Path) -> None:
    assert fake.run("setup.sh").rc == 0
    env_path = f"{fake.bin_dir}:{no_cargo_path(tmp_path)}"
    python_dir = os.path.dirname(os.path.realpath(sys.executable))  # the helpers need python
    result = fake.run("deploy.sh", PATH=f"{env_path}:{python_dir}", HOME=str(tmp_path))
    assert result.rc == 1
    assert "the Rust toolchain is missing" in result.stderr
    assert "building the wheel failed" in result.stderr
    assert result.changes() == []
