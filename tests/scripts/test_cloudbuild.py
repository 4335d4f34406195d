"""cloudbuild.yaml: the real gcloud validates it (`gcloud builds submit --no-source` checks the
file before it needs an account), every substitution it uses is defined and every one defined
is used (Cloud Build's default MUST_MATCH), and its wheel is built the way deploy.sh builds it."""

from __future__ import annotations

import re
from pathlib import Path

from scriptsenv import NO_ACCOUNT, ROOT, WHEEL_TAG, replay

CONFIG = ROOT / "cloudbuild.yaml"
# Cloud Build's own substitutions (https://cloud.google.com/build/docs/configuring-builds/
# substitute-variable-values#using_default_substitutions).
BUILT_IN = {
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "BUILD_ID",
    "LOCATION",
    "TRIGGER_NAME",
    "COMMIT_SHA",
    "REVISION_ID",
    "SHORT_SHA",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
}


def submit(config: Path) -> tuple[int, str]:
    _, rc, stderr = replay(["--project=demo-proj", "--quiet", "builds", "submit",
                            f"--config={config}", "--no-source"])  # fmt: skip
    return rc, stderr


def used_and_defined(text: str) -> tuple[set[str], set[str]]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    body = body.replace("$$", "")  # an escaped $: the step's shell sees it, not Cloud Build
    used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", body))
    block = re.search(r"^substitutions:\n((?:  .*\n)+)", text, re.M)
    defined = set(re.findall(r"^  (_[A-Z0-9_]+):", block.group(1), re.M)) if block else set()
    return used, defined


def test_the_real_gcloud_accepts_cloudbuild_yaml() -> None:
    rc, stderr = submit(CONFIG)
    assert rc == 1 and NO_ACCOUNT in stderr, stderr


def test_the_real_gcloud_would_reject_a_broken_config(tmp_path: Path) -> None:
    """The check above means something: a misspelt key fails before the account check."""
    broken = tmp_path / "cloudbuild.yaml"
    broken.write_text(CONFIG.read_text().replace("entrypoint: bash", "entrypiont: bash", 1))
    rc, stderr = submit(broken)
    assert rc == 1 and "entrypiont" in stderr and NO_ACCOUNT not in stderr, stderr


def test_every_substitution_is_defined_and_used() -> None:
    used, defined = used_and_defined(CONFIG.read_text())
    user = {name for name in used if name.startswith("_")}
    assert user == defined, f"used {sorted(user)}, defined {sorted(defined)}"
    assert used - user <= BUILT_IN, sorted(used - user - BUILT_IN)
    assert {"_REGION", "_ENV"} <= defined


def test_the_substitution_check_sees_an_unescaped_shell_variable() -> None:
    used, _ = used_and_defined("steps:\n  - args: ['echo $HOME $$PATH ${_X}']\n")
    assert used == {"HOME", "_X"}


def test_both_build_paths_share_one_definition_of_the_wheel() -> None:
    text = CONFIG.read_text()
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "scripts/lib/wheel.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert env["WHEEL_TAG"] == WHEEL_TAG
    assert env["WHEEL_COMPAT"] == "manylinux_2_28" and WHEEL_TAG.endswith("manylinux_2_28_x86_64")
    image = re.search(r"name: (ghcr\.io/pyo3/maturin:\S+)", text)
    assert image and image.group(1) == f"ghcr.io/pyo3/maturin:v{env['MATURIN_VERSION']}"
    assert "args: [scripts/lib/build_wheel.sh, --in-container, dist]" in text
    build = (ROOT / "scripts/lib/build_wheel.sh").read_text()
    assert 'args=(build --release --out "$out" --compatibility "$WHEEL_COMPAT")' in build
    assert 'imgpipe-*-"$WHEEL_TAG".whl' in build  # both paths check the tag
    deploy = (ROOT / "scripts/deploy.sh").read_text()
    assert 'bash "$ROOT/scripts/lib/build_wheel.sh" "$ROOT/dist"' in deploy


def test_steps_use_current_images_and_install_the_wheel_as_a_user_would() -> None:
    text = CONFIG.read_text()
    assert "cloud-sdk:slim" not in text
    assert "name: gcr.io/google.com/cloudsdktool/google-cloud-cli:slim" in text
    assert "name: python:3.11-slim" in text
    assert "--only-binary :all:" in text
    assert "imgpipe process /workspace/examples" in text
    assert "bash scripts/deploy.sh" in text
    assert "logging: CLOUD_LOGGING_ONLY" in text  # a user-specified build account needs it


def test_function_requirements_are_the_gcp_extra() -> None:
    """What the deployed functions install is what the gcp tests ran with."""
    import tomllib  # noqa: PLC0415

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    lines = (ROOT / "functions/requirements.txt").read_text().splitlines()
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert sorted(requirements) == sorted(extra["gcp"])
