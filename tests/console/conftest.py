"""The console in a real browser: Debian's chromium and chromedriver, driven by Selenium
(headless), against a real `imgpipe serve` with a few corpus images and one corrupt file.

`scripts/ci_browser_deps.sh` installs the browser; without it these tests fail (never skip)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browserkit import ARTIFACTS, BAD, GOOD, RENDITIONS, Store, make_webdriver

from corpus import corpus_dir
from local.serveproc import Server


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    data = tmp_path_factory.mktemp("console") / "data"
    data.mkdir()
    srv = Server(data, env_extra={"IMGPIPE_RENDITIONS": RENDITIONS})
    srv.start()
    try:
        ids: dict[str, str] = {}
        for name in [*GOOD, BAD]:
            reply = srv.upload(name, (corpus_dir() / name).read_bytes())
            assert reply.status in (200, 202), reply.body
            ids[name] = reply.json()["image_id"]
        for name, image_id in ids.items():
            view = srv.wait_image(image_id, timeout=60)
            want = "failed" if name == BAD else "done"
            assert view["status"] == want, (name, view)
        yield Store(srv, ids)
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = make_webdriver()
    try:
        yield driver
    finally:
        driver.quit()
