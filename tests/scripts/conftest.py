"""Fixtures for the tests of scripts/: the fake gcloud and the journeys run against it (shared
by the behaviour tests and the replay through the real gcloud), and the gcp harness's emulator
deployment for verify.sh."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gcp"))

from gcpharness import (  # noqa: F401 (re-exported fixtures of the gcp harness)
    deployment,
    firestore_host,
    gcs,
    log_dir,
    pubsub_host,
    sa_key_file,
    session_env,
    tasks_host,
)
from scriptsenv import Fake, FakeServer, Journey, Result, journey_on, write_launcher


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def fake_bin(tmp_path_factory: pytest.TempPathFactory, fake_server: FakeServer) -> Path:
    bin_dir = tmp_path_factory.mktemp("fake-bin")
    write_launcher(bin_dir, fake_server)
    return bin_dir


@pytest.fixture
def fake(tmp_path: Path, fake_bin: Path) -> Fake:
    """An empty project of its own."""
    return Fake.create(tmp_path / "cloud", fake_bin)


@pytest.fixture(scope="session")
def journey(tmp_path_factory: pytest.TempPathFactory, fake_bin: Path) -> Journey:
    fake = Fake.create(tmp_path_factory.mktemp("journey"), fake_bin)
    return journey_on(fake)


@pytest.fixture(scope="session")
def staging_journey(tmp_path_factory: pytest.TempPathFactory, fake_bin: Path) -> Journey:
    """--env staging, with an alert e-mail, in a project that already has the default env."""
    fake = Fake.create(tmp_path_factory.mktemp("staging"), fake_bin)
    for script in ("setup.sh", "deploy.sh"):
        result = fake.run(script) if script == "setup.sh" else fake.deploy()
        assert result.rc == 0, result
    return journey_on(fake, "--env", "staging", ALERT_EMAIL="oncall@example.com")


@pytest.fixture(scope="session")
def dry_runs(tmp_path_factory: pytest.TempPathFactory, fake_bin: Path) -> Iterator[list[Result]]:
    """--dry-run of both scripts on an empty project, then of both on a set-up project."""
    fake = Fake.create(tmp_path_factory.mktemp("dry"), fake_bin)
    results = [fake.run("setup.sh", "--dry-run"), fake.run("deploy.sh", "--dry-run")]
    yield results
