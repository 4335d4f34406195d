from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localharness import Harness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    yield Harness(tmp_path)
