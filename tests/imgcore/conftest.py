"""Shared fixtures for the imgcore tests (helpers live in `_reference.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Make `_reference` importable whatever pytest import mode is in use.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from _reference import Entry, corpus_dir, manifest  # noqa: E402


@pytest.fixture(scope="session")
def corpus() -> Path:
    return corpus_dir()


@pytest.fixture(scope="session")
def entries_by_name() -> dict[str, Entry]:
    return {e.file: e for e in manifest()}


def pytest_configure(config: pytest.Config) -> None:
    # Fail the whole run loudly (not skip) when the corpus is missing.
    corpus_dir()
