from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serveproc import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data")
    srv.data_dir.mkdir()
    srv.start()
    yield srv
    srv.stop()
