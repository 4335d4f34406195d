"""Helpers for the console's browser tests: the webdriver (Debian's chromium and chromedriver,
headless), waiting, viewports, dark mode and full-page screenshots under artifacts/console/."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from local.serveproc import Server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "console"
INSTALL_HINT = "run `bash scripts/ci_browser_deps.sh` (Debian's chromium and chromium-driver)"

# Renditions small enough to render in a blink, with one cover crop the focal point moves.
RENDITIONS = "320,200x200:cover"
# Landscape photos (a cover crop of a landscape image moves with the focal point's x), one
# with alpha, and a corrupt file that fails at once (attempts = 1).
GOOD = ["progressive_tablets.jpg", "grayscale_concert.jpg", "webp_alpha.webp"]
BAD = "truncated.jpg"

DESKTOP = (1280, 900)
PHONE = (390, 844)

T = TypeVar("T")


@dataclass
class Store:
    server: Server
    ids: dict[str, str]  # corpus file -> image id

    @property
    def focus_id(self) -> str:
        return self.ids["progressive_tablets.jpg"]

    @property
    def bad_id(self) -> str:
        return self.ids[BAD]


def make_webdriver() -> Any:
    try:
        from selenium import webdriver  # noqa: PLC0415
        from selenium.webdriver.chrome.service import Service  # noqa: PLC0415
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[dev]'")
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = " and ".join(
            n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None
        )
        pytest.fail(f"{missing} not found: {INSTALL_HINT}")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
        "--lang=en-US",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(driver)
    browser = webdriver.Chrome(service=service, options=opts)
    browser.set_page_load_timeout(20)
    browser.set_script_timeout(20)
    return browser


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20) -> T:
    """Polls probe until it returns something truthy; fails naming what it waited for."""
    deadline = time.monotonic() + timeout
    last: Any = None
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            error = None
        except Exception as exc:  # a stale element while the page re-renders: try again
            error = exc
            last = None
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}: {error or last!r}")


def set_viewport(driver: Any, size: tuple[int, int]) -> None:
    width, height = size
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def set_dark(driver: Any, dark: bool) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]},
    )


def shoot(driver: Any, name: str) -> Path:
    """A full-page PNG of what the browser shows, under artifacts/console/."""
    driver.execute_script("return document.fonts ? document.fonts.ready.then(() => true) : true")
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width = metrics["cssLayoutViewport"]["clientWidth"]
    height = min(int(size["height"]), 6000)
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def shoot_variants(driver: Any, name: str, ready: Callable[[], Any]) -> None:
    """The view as it is (desktop, light), then dark, then at a phone's width."""
    shoot(driver, name)
    set_dark(driver, True)
    ready()
    shoot(driver, f"{name}-dark")
    set_dark(driver, False)
    set_viewport(driver, PHONE)
    ready()
    shoot(driver, f"{name}-phone")
    set_dark(driver, True)
    shoot(driver, f"{name}-phone-dark")
    set_dark(driver, False)
    set_viewport(driver, DESKTOP)
    ready()
