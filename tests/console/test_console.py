"""The operator's console in headless Chromium against a real `imgpipe serve`: the key, the
overview against /status, the grid's thumbnails and ThumbHash placeholders, one image with its
renditions and palette, the focal point by a click on the picture, failures retried, jobs, and
a queue paused from the page as `imgpipe queue describe` sees it. Each view is saved as PNG
(desktop, dark, phone) under artifacts/console/.

The tests share one server and one browser and run in file order: later ones change the store
(a focal point, a retry, a paused queue)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from typing import Any

from browserkit import (
    GOOD,
    Store,
    set_dark,
    shoot,
    shoot_variants,
    wait_for,
)
from PIL import Image, ImageStat
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from corpus import corpus_dir
from local.serveproc import TOKEN

Driver = Any


def open_console(driver: Driver, store: Store, hash_: str = "") -> None:
    driver.get(f"{store.server.base}/{hash_}")


def css(driver: Driver, selector: str) -> list[Any]:
    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def one(driver: Driver, selector: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, selector)


def visible(driver: Driver, selector: str) -> Any:
    found = [e for e in css(driver, selector) if e.is_displayed()]
    return found[0] if found else None


def enter_key(driver: Driver, key: str) -> None:
    field = wait_for("the key field", lambda: visible(driver, "#key-input"))
    field.clear()
    field.send_keys(key, Keys.ENTER)


def go(driver: Driver, hash_: str, ready: str) -> Any:
    driver.execute_script("location.hash = arguments[0]", hash_)
    return wait_for(f"{ready} on {hash_}", lambda: visible(driver, ready))


def api(store: Store, method: str, path: str, body: Any = None) -> Any:
    reply = store.server.request(method, path, json_body=body)
    assert reply.status < 300, (method, path, reply.status, reply.body)
    return reply.json()


def no_console_errors(driver: Driver) -> None:
    """Nothing the page ran threw, and the CSP refused nothing."""
    bad = [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE"
        and e.get("source") != "network"  # refused keys and 404s are answers, not bugs
    ]
    assert not bad, bad


def test_key_wrong_then_right(browser: Driver, store: Store) -> None:
    open_console(browser, store)
    browser.execute_script("sessionStorage.clear(); localStorage.clear()")
    browser.refresh()
    enter_key(browser, "not-the-key")
    message = wait_for(
        "the refused-key message",
        lambda: (
            one(browser, "#key-error").text
            if "refused" in one(browser, "#key-error").text
            else None
        ),
    )
    assert "forbidden" in message
    assert "enter it again" in message
    assert visible(browser, "#key-panel") is not None
    assert visible(browser, "#view") is None
    # The refused key is not kept.
    assert browser.execute_script("return sessionStorage.getItem('imgpipe.apiKey')") is None
    shoot(browser, "key-wrong")

    enter_key(browser, TOKEN)
    wait_for("the overview", lambda: visible(browser, "[data-count='done']"))
    kept = browser.execute_script(
        "return [sessionStorage.getItem('imgpipe.apiKey'), localStorage.length, document.cookie]"
    )
    assert kept == [TOKEN, 0, ""]
    assert TOKEN not in browser.current_url
    no_console_errors(browser)


def test_overview_counts_match_status(browser: Driver, store: Store) -> None:
    go(browser, "#/overview", "[data-count='done']")
    status = api(store, "GET", "/status")

    def counts() -> dict[str, int] | None:
        shown = {
            e.get_attribute("data-count"): int(e.text.replace(",", ""))
            for e in css(browser, "[data-count]")
        }
        want = {k: status["images"][k] for k in ("queued", "processing", "done", "failed")}
        return shown if all(shown.get(k) == v for k, v in want.items()) else None

    shown = wait_for("the counts of /status", counts)
    assert shown["done"] == len(GOOD)
    assert shown["failed"] == 1
    assert shown["total"] == len(GOOD) + 1
    for queue in status["queues"]:
        row = one(browser, f"tr[data-queue='{queue['name']}']")
        assert queue["state"] in row.text
        assert row.find_element(By.CSS_SELECTOR, "[data-field='depth']").text == str(queue["depth"])
        assert row.find_element(By.CSS_SELECTOR, "[data-field='in_flight']").text == str(
            queue["in_flight"]
        )
    if status.get("throughput"):
        done5 = one(browser, "[data-throughput='done_last_5_min']").text
        assert done5 == str(status["throughput"]["done_last_5_min"])
    recent = one(browser, "#h-recent").find_element(By.XPATH, "..").find_element(By.XPATH, "..")
    assert store.bad_id[:12] in recent.text
    shoot_variants(browser, "overview", lambda: visible(browser, "[data-count='done']"))
    no_console_errors(browser)


def thumbs_loaded(driver: Driver, expected: int) -> list[dict[str, Any]] | None:
    state = driver.execute_script(
        """return [...document.querySelectorAll('.tile')].map(t => {
             const real = t.querySelector('img.real'), ph = t.querySelector('img.ph');
             return {id: t.dataset.imageId, status: t.dataset.status,
                     src: real && real.currentSrc, complete: real && real.complete,
                     natural: real ? real.naturalWidth : 0,
                     ph: ph && ph.src.slice(0, 22), phNatural: ph ? ph.naturalWidth : 0,
                     swatches: t.querySelectorAll('.swatch').length};
           })"""
    )
    done = [t for t in state if t["status"] == "done"]
    if len(done) != expected or not all(t["complete"] and t["natural"] > 0 for t in done):
        return None
    return list(state)


def test_grid_shows_loaded_thumbnails(browser: Driver, store: Store) -> None:
    go(browser, "#/images", ".tile")
    tiles = wait_for("every thumbnail loaded", lambda: thumbs_loaded(browser, len(GOOD)))
    assert {t["id"] for t in tiles} == set(store.ids.values())
    for tile in tiles:
        if tile["status"] != "done":
            continue
        view = api(store, "GET", f"/images/{tile['id']}")
        webps = [r for r in view["renditions"] if r["format"] == "webp"]
        smallest = min(webps, key=lambda r: (r["width"] * r["height"], r["bytes"]))
        assert tile["src"] == smallest["url"]
        # The ThumbHash placeholder, decoded in the page into a PNG data URL.
        assert tile["ph"] == "data:image/png;base64,"
        assert tile["phNatural"] > 0
        # Palette swatches plus the seed colour.
        assert tile["swatches"] == len(view["palette"]["colors"]) + 1
    failed = one(browser, f".tile[data-image-id='{store.bad_id}']")
    assert "corrupt_image" in failed.text
    shoot_variants(browser, "images", lambda: thumbs_loaded(browser, len(GOOD)))
    no_console_errors(browser)


def test_grid_placeholders_until_thumbnails_load(browser: Driver, store: Store) -> None:
    """With the renditions held back, each tile shows its decoded ThumbHash; released, the
    thumbnails replace them."""
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    browser.execute_cdp_cmd("Fetch.enable", {"patterns": [{"urlPattern": "*/files/*"}]})
    try:
        browser.refresh()
        wait_for("the tiles", lambda: len(css(browser, ".tile")) == len(store.ids))
        held = browser.execute_script(
            """return [...document.querySelectorAll('.tile[data-status=done]')].map(t => {
                 const ph = t.querySelector('img.ph'), real = t.querySelector('img.real');
                 const shown = ph && ph.complete && ph.naturalWidth > 0;
                 return [shown && getComputedStyle(ph).visibility, real && real.naturalWidth];
               })"""
        )
        assert held == [["visible", 0]] * len(GOOD), held
        shoot(browser, "images-placeholders")
    finally:
        browser.execute_cdp_cmd("Fetch.disable", {})
        browser.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": False})
    browser.refresh()
    wait_for("every thumbnail loaded", lambda: thumbs_loaded(browser, len(GOOD)))
    hidden = browser.execute_script(
        """return [...document.querySelectorAll('.tile[data-status=done] img.ph')]
             .map(ph => getComputedStyle(ph).visibility)"""
    )
    assert hidden == ["hidden"] * len(GOOD)


def test_thumbhash_decoder_matches_the_picture(browser: Driver, store: Store) -> None:
    """The page's own decoder turns each image's ThumbHash into a picture whose mean colour
    and alpha are the rendition's (the hash keeps its DC terms to 6 bits: a few levels off)."""
    for name in GOOD:
        view = api(store, "GET", f"/images/{store.ids[name]}")
        webp = next(
            r for r in view["renditions"] if r["name"].startswith("w") and r["format"] == "webp"
        )
        raw = store.server.request("GET", webp["url"]).body
        picture = Image.open(io.BytesIO(raw)).convert("RGBA")
        want = ImageStat.Stat(picture).mean
        decoded = browser.execute_async_script(
            """const [hash, ratio, done] = arguments;
               import('/console/thumbhash.js').then(m => {
                 const img = m.thumbHashToRGBA(m.base64ToBytes(hash), ratio);
                 done({w: img.w, h: img.h, rgba: Array.from(img.rgba)});
               }).catch(e => done({error: String(e)}));""",
            view["palette"]["thumbhash"],
            webp["width"] / webp["height"],
        )
        assert "error" not in decoded, decoded
        assert max(decoded["w"], decoded["h"]) == 32
        assert abs(decoded["w"] / decoded["h"] - webp["width"] / webp["height"]) < 0.1
        rgba = decoded["rgba"]
        n = len(rgba) // 4
        got = [sum(rgba[i * 4 + c] for i in range(n)) / n for c in range(4)]
        assert abs(got[3] - want[3]) < 20, (name, "alpha", got, want)
        if want[3] < 250:
            continue  # colour under transparency is not comparable pixel for pixel
        for channel in range(3):
            assert abs(got[channel] - want[channel]) < 12, (name, channel, got, want)


def test_grid_filter_search_and_pages(browser: Driver, store: Store) -> None:
    go(browser, "#/images", ".tile")
    one(browser, ".filters a[data-filter='failed']").click()
    wait_for(
        "only the failed image",
        lambda: [t.get_attribute("data-image-id") for t in css(browser, ".tile")] == [store.bad_id],
    )
    # Pages of two, newest first, through the API's cursors.
    go(browser, "#/images?limit=2", ".tile")
    newest = [v["image_id"] for v in api(store, "GET", "/images?limit=200")["images"]]
    assert len(newest) == len(store.ids)

    def page() -> list[str] | None:
        ids = [t.get_attribute("data-image-id") for t in css(browser, ".tile")]
        return ids or None

    wait_for("page 1", lambda: page() == newest[:2])
    one(browser, "button.next").click()
    wait_for("page 2", lambda: page() == newest[2:4])
    assert not one(browser, "button.next").is_enabled()
    one(browser, "button.prev").click()
    wait_for("page 1 again", lambda: page() == newest[:2])
    # Search by the full id opens the image.
    search = one(browser, "#image-search")
    search.send_keys(store.focus_id, Keys.ENTER)
    wait_for(
        "the image view", lambda: visible(browser, f".image-view[data-image-id='{store.focus_id}']")
    )
    no_console_errors(browser)


def rendition_cards(driver: Driver) -> dict[str, int] | None:
    cards = css(driver, "li.rendition")
    return {c.get_attribute("data-file"): int(c.get_attribute("data-bytes")) for c in cards} or None


def test_image_view_shows_renditions_and_palette(browser: Driver, store: Store) -> None:
    view = api(store, "GET", f"/images/{store.focus_id}")
    go(browser, f"#/image/{store.focus_id}", "li.rendition")
    shown = wait_for("every rendition", lambda: rendition_cards(browser))
    assert shown == {r["file"]: r["bytes"] for r in view["renditions"]}
    formats = {c.get_attribute("data-format") for c in css(browser, "li.rendition")}
    assert formats == {"jpeg", "webp"}
    for rendition in view["renditions"]:
        card = one(browser, f"li.rendition[data-file='{rendition['file']}']")
        assert f"{rendition['width']}\u00d7{rendition['height']}" in card.text
        link = card.find_element(By.CSS_SELECTOR, "a")
        assert link.get_attribute("href") == rendition["url"]
    hexes = [li.get_attribute("data-hex") for li in css(browser, ".palette-big li")]
    assert hexes == [c["hex"] for c in view["palette"]["colors"]]
    seed = one(browser, "[data-seed]").get_attribute("data-seed")
    assert seed == view["palette"]["seed"]
    facts = one(browser, "dl.facts").text
    assert "progressive_tablets.jpg" in facts
    assert "650\u00d7470" in facts
    wait_for(
        "the picture loaded",
        lambda: browser.execute_script(
            "const i = document.querySelector('img.picture'); return i.complete && i.naturalWidth"
        ),
    )
    shoot_variants(browser, "image", lambda: visible(browser, "li.rendition"))
    no_console_errors(browser)


def cover_state(store: Store) -> tuple[dict[str, Any], dict[str, str]]:
    view = api(store, "GET", f"/images/{store.focus_id}")
    covers = {}
    for r in view["renditions"]:
        if r["name"].endswith("-cover"):
            body = store.server.request("GET", r["url"]).body
            # The pixels, not the file name: a new name alone would not show the crop moved.
            covers[r["format"]] = hashlib.sha256(body).hexdigest()
    return view, covers


def click_picture(driver: Driver, fx: float, fy: float) -> None:
    picture = one(driver, "img.picture")
    rect = picture.rect
    ActionChains(driver).move_to_element_with_offset(
        picture, int((fx - 0.5) * rect["width"]), int((fy - 0.5) * rect["height"])
    ).click().perform()


def focus_settled(store: Store, fx: float, fy: float) -> dict[str, Any] | None:
    view = api(store, "GET", f"/images/{store.focus_id}")
    focus = view.get("focus")
    if view["status"] != "done" or not focus:
        return None
    return view if abs(focus[0] - fx) < 0.03 and abs(focus[1] - fy) < 0.03 else None


def test_click_sets_focal_point_and_covers_change(browser: Driver, store: Store) -> None:
    go(browser, f"#/image/{store.focus_id}", "img.picture")
    wait_for(
        "the picture loaded",
        lambda: one(browser, "img.picture").get_attribute("naturalWidth") != "0",
    )
    before_view, before = cover_state(store)
    assert set(before) == {"jpeg", "webp"}, before_view["renditions"]
    assert before_view.get("focus") is None

    # Click near the left edge: PATCH sent, the image gets its focus, the covers render again.
    click_picture(browser, 0.06, 0.5)
    wait_for("the focus stored and the covers rendered", lambda: focus_settled(store, 0.06, 0.5))
    _, left = cover_state(store)
    wait_for(
        "the page showing the new covers",
        lambda: (
            rendition_cards(browser)
            == {
                r["file"]: r["bytes"]
                for r in api(store, "GET", f"/images/{store.focus_id}")["renditions"]
            }
        ),
    )
    wait_for("the focus marker", lambda: visible(browser, ".picker .marker.current"))
    assert "(0.06, 0.50)" in one(browser, "#focus-now").text
    shoot(browser, "image-focus-left")

    # Then near the right edge: a square crop of a landscape photo must move with it.
    click_picture(browser, 0.94, 0.5)
    wait_for("the second focus stored", lambda: focus_settled(store, 0.94, 0.5))
    _, right = cover_state(store)
    wait_for(
        "the page showing the newer covers",
        lambda: (
            rendition_cards(browser)
            == {
                r["file"]: r["bytes"]
                for r in api(store, "GET", f"/images/{store.focus_id}")["renditions"]
            }
        ),
    )
    shoot(browser, "image-focus-right")

    for fmt in ("jpeg", "webp"):
        assert left[fmt] != right[fmt], f"the {fmt} cover did not move with the focal point"
        assert before[fmt] != left[fmt] or before[fmt] != right[fmt], (
            f"the {fmt} cover never changed after a click"
        )
    no_console_errors(browser)


def test_failure_listed_and_retried(browser: Driver, store: Store) -> None:
    go(browser, "#/failures", f"tr[data-image-id='{store.bad_id}']")
    row = one(browser, f"tr[data-image-id='{store.bad_id}']")
    assert "corrupt_image" in row.text
    assert row.find_element(By.CSS_SELECTOR, "[data-field='attempts']").text == "1"
    shoot_variants(browser, "failures", lambda: visible(browser, "button.retry"))

    jobs_before = {j["id"] for j in api(store, "GET", "/jobs?limit=200")["jobs"]}
    row.find_element(By.CSS_SELECTOR, "button.retry").click()
    link = wait_for("the retry's job", lambda: visible(browser, "#notice a[data-job-id]"))
    job_id = link.get_attribute("data-job-id")
    assert job_id not in jobs_before
    job = api(store, "GET", f"/jobs/{job_id}")
    assert job["total_tasks"] == 1
    jobs_after = {j["id"] for j in api(store, "GET", "/jobs?limit=200")["jobs"]}
    assert job_id in jobs_after
    # The corrupt file fails again at once and is listed again.
    wait_for(
        "the failure back after its retry",
        lambda: api(store, "GET", f"/jobs/{job_id}")["status"] == "done",
    )
    no_console_errors(browser)


def test_jobs_view_shows_progress(browser: Driver, store: Store) -> None:
    jobs = api(store, "GET", "/jobs?limit=20")["jobs"]
    assert jobs
    go(browser, "#/jobs", "li.job")
    newest = jobs[0]
    item = wait_for(
        "the newest job, done",
        lambda: visible(browser, f"li.job[data-job-id='{newest['id']}'][data-status='done']"),
    )
    bar = item.find_element(By.CSS_SELECTOR, "[role='progressbar']")
    assert float(bar.get_attribute("aria-valuenow")) == newest["progress_percentage"]
    assert item.find_element(By.CSS_SELECTOR, "[data-field='total']").text == str(
        newest["total_tasks"]
    )
    assert item.find_element(By.CSS_SELECTOR, "[data-field='failed']").text == str(
        newest["failed_tasks"]
    )
    shoot_variants(browser, "jobs", lambda: visible(browser, "li.job"))
    no_console_errors(browser)


def describe_queue(store: Store, name: str) -> dict[str, Any]:
    env = {**os.environ, "IMGPIPE_DATA_DIR": str(store.server.data_dir)}
    out = subprocess.run(
        [sys.executable, "-m", "imgpipe.cli", "queue", "describe", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    described: dict[str, Any] = json.loads(out.stdout)
    return described


def test_pause_and_resume_a_queue(browser: Driver, store: Store) -> None:
    go(browser, "#/overview", "tr[data-queue='high']")
    assert describe_queue(store, "high")["state"] == "RUNNING"
    button = one(browser, "tr[data-queue='high'] button")
    assert button.text == "Pause"
    button.click()
    wait_for(
        "the queue shown paused", lambda: "PAUSED" in one(browser, "tr[data-queue='high']").text
    )
    assert describe_queue(store, "high")["state"] == "PAUSED"
    queues = {q["name"]: q["state"] for q in api(store, "GET", "/status")["queues"]}
    assert queues["high"] == "PAUSED"
    set_dark(browser, True)
    shoot(browser, "overview-paused-dark")
    set_dark(browser, False)
    # Keyboard: the resume button is a real button, reachable and pressed with Enter.
    resume = one(browser, "tr[data-queue='high'] button")
    assert resume.text == "Resume"
    resume.send_keys(Keys.ENTER)
    wait_for(
        "the queue shown running", lambda: "RUNNING" in one(browser, "tr[data-queue='high']").text
    )
    assert describe_queue(store, "high")["state"] == "RUNNING"
    no_console_errors(browser)


def test_views_are_keyboard_reachable(browser: Driver, store: Store) -> None:
    """Tab from the top of the page reaches the views' links; focus is visible."""
    go(browser, "#/overview", "[data-count='done']")
    browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    body = one(browser, "body")
    reached = []
    for _ in range(8):
        body = browser.switch_to.active_element
        body.send_keys(Keys.TAB)
        el = browser.switch_to.active_element
        reached.append(el.get_attribute("href") or el.text)
    assert any(str(r).endswith("#/failures") for r in reached), reached
    outline = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline


def live_text(driver: Driver) -> str:
    return str(one(driver, "#live-state").text)


def failed_fetches(driver: Driver) -> int:
    return int(
        driver.execute_script(
            """return performance.getEntriesByType('resource')
                 .filter(e => new URL(e.name).pathname === '/failed').length"""
        )
    )


def test_polling_backs_off_and_pauses_while_hidden(browser: Driver, store: Store) -> None:
    """Nothing changes on the failures view: the interval doubles 2 -> 4 -> 8 s; a user's
    refresh resets it; a hidden tab polls nothing until it is shown again."""
    go(browser, "#/failures", f"tr[data-image-id='{store.bad_id}']")
    browser.execute_script(
        "performance.setResourceTimingBufferSize(10000); performance.clearResourceTimings()"
    )
    wait_for("the interval at 4 s", lambda: "next in 4 s" in live_text(browser), timeout=6)
    wait_for("the interval at 8 s", lambda: "next in 8 s" in live_text(browser), timeout=8)
    one(browser, "#refresh").click()
    wait_for("the interval reset", lambda: "next in 2 s" in live_text(browser), timeout=3)

    browser.execute_script(
        """Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
           Object.defineProperty(document, 'visibilityState',
                                 {configurable: true, get: () => 'hidden'});
           document.dispatchEvent(new Event('visibilitychange'));"""
    )
    wait_for("polling paused", lambda: "hidden" in live_text(browser), timeout=3)
    before = failed_fetches(browser)
    time.sleep(3)  # longer than the 2 s interval it had
    assert failed_fetches(browser) == before
    browser.execute_script(
        """delete document.hidden; delete document.visibilityState;
           document.dispatchEvent(new Event('visibilitychange'));"""
    )
    wait_for("a poll once shown", lambda: failed_fetches(browser) > before, timeout=3)
    wait_for("live again", lambda: "next in 2 s" in live_text(browser), timeout=3)


def test_reprocess_and_delete_with_confirm(browser: Driver, store: Store) -> None:
    reply = store.server.upload(
        "png_palette_basn3p08.png", (corpus_dir() / "png_palette_basn3p08.png").read_bytes()
    )
    image_id = reply.json()["image_id"]
    assert store.server.wait_image(image_id, timeout=30)["status"] == "done"
    go(browser, f"#/image/{image_id}", "li.rendition")

    one(browser, "[data-key='reprocess']").click()
    link = wait_for("the reprocess job", lambda: visible(browser, "#notice a[data-job-id]"))
    job = api(store, "GET", f"/jobs/{link.get_attribute('data-job-id')}")
    assert job["total_tasks"] == 1

    one(browser, "[data-key='delete']").click()
    wait_for("the confirmation", lambda: visible(browser, "[role='alertdialog']"))
    # Focus moved to the destructive button; Cancel keeps the image.
    assert browser.switch_to.active_element.get_attribute("data-key") == "delete-yes"
    shoot(browser, "image-delete-confirm")
    one(browser, "[data-key='delete-no']").click()
    wait_for("the confirmation gone", lambda: visible(browser, "[role='alertdialog']") is None)
    assert store.server.request("GET", f"/images/{image_id}").status == 200

    one(browser, "[data-key='delete']").click()
    wait_for("the confirmation", lambda: visible(browser, "[data-key='delete-yes']")).click()
    wait_for("back on the images", lambda: browser.current_url.endswith("#/images"))
    wait_for(
        "the image gone",
        lambda: store.server.request("GET", f"/images/{image_id}").status == 404,
    )
    tiles = [t.get_attribute("data-image-id") for t in css(browser, ".tile")]
    assert image_id not in tiles
    no_console_errors(browser)
