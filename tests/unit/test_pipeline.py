"""The pipeline through the real SQLite queue, state store and file blobs, with an injected
clock: retries with backoff, dead letters exactly once, permanent failures at once, the
sweeper, duplicate deliveries, reprocessing."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from corpus import corpus_dir
from imgpipe import pipeline, tasks
from imgpipe.local.blobs import FileBlobStore
from imgpipe.model import DeadLetter, State
from localharness import PHOTO, Harness


def test_a_task_renders_once_and_a_second_delivery_skips(harness: Harness) -> None:
    image_id = harness.submit()
    harness.drain()
    record = harness.svc.state.get_image(image_id)
    assert record is not None and record.state is State.DONE
    outputs = harness.outputs(image_id)
    assert "metadata.json" in outputs
    meta = json.loads((harness.files.root / "processed" / image_id / "metadata.json").read_text())
    candidates = meta["palette"]["seed_candidates"]
    assert 1 <= len(candidates) <= 4 and candidates[0] == meta["palette"]["seed"]
    widths = sorted(r["width"] for r in meta["renditions"] if r["format"] == "webp")
    assert meta["srcset"]["webp"].endswith(f" {widths[-1]}w")
    body = json.dumps({"image_id": image_id}).encode()
    status, answer = tasks.process(harness.svc, {}, body)
    assert (status, answer["status"]) == (200, "skipped")
    assert harness.outputs(image_id) == outputs


def test_transient_failures_retry_with_backoff_then_succeed(tmp_path: Path) -> None:
    harness = Harness(tmp_path, failures=2)
    image_id = harness.submit()
    start = harness.clock.now()
    harness.dispatcher.run_until_idle(timeout=60)
    record = harness.svc.state.get_image(image_id)
    assert record is not None
    assert (record.state, record.attempts) == (State.QUEUED, 1)
    assert record.error_code == "unavailable"
    assert record.next_attempt_at == pytest.approx(start + 10, abs=1)
    harness.drain()
    record = harness.svc.state.get_image(image_id)
    assert record is not None and record.state is State.DONE
    assert record.attempts == 3
    assert harness.calls == [503, 503, 200]
    assert harness.clock.now() - start == pytest.approx(10 + 20, abs=1)


def test_last_attempt_dead_letters_exactly_once(tmp_path: Path) -> None:
    harness = Harness(tmp_path, failures=10**6)
    image_id = harness.submit()
    harness.drain()
    assert harness.calls == [503] * 5
    record = harness.svc.state.get_image(image_id)
    assert record is not None and record.state is State.FAILED
    letters = harness.svc.state.list_dead_letters()
    assert len(letters) == 1
    assert (letters[0].image_id, letters[0].attempts, letters[0].error_code) == (
        image_id,
        5,
        "unavailable",
    )
    # The failure callback delivered again records nothing new.
    again = {
        "image_id": image_id,
        "task_name": letters[0].task_name,
        "attempts": 5,
        "error": {"code": "unavailable", "message": "x"},
    }
    assert tasks.record_failure(harness.svc, json.dumps(again).encode())[1]["new"] is False
    assert len(harness.svc.state.list_dead_letters()) == 1
    # And a retry brings it back under a fresh task name.
    harness.blobs.heal()
    _, count = pipeline.retry_failed(harness.svc)
    assert count == 1
    harness.drain()
    record = harness.svc.state.get_image(image_id)
    assert record is not None and record.state is State.DONE
    assert harness.svc.state.list_dead_letters() == []


def test_an_object_refused_at_the_door_is_retried_from_its_dead_letter(
    harness: Harness,
) -> None:
    svc = harness.svc
    assert isinstance(svc.uploads, FileBlobStore)
    assert svc.uploads.put("drop/photo.jpg", b"not an image at all", content_type="image/jpeg")
    job_id = pipeline.enqueue_prefix(svc, "drop/")
    harness.drain()
    job = svc.state.get_job(job_id)
    assert job is not None and job.to_json()["total_tasks"] == 1
    [letter] = svc.state.list_dead_letters()
    assert letter.error_code == "unsupported_format"
    assert letter.source_object == "drop/photo.jpg"
    assert svc.state.get_image(letter.image_id) is None
    # The user replaces the file, then retries the failure: the object is read again.
    photo = (corpus_dir() / PHOTO).read_bytes()
    (svc.uploads.root / "drop" / "photo.jpg").write_bytes(photo)
    _, count = pipeline.retry_failed(svc, [letter.image_id])
    assert count == 1
    harness.drain()
    assert svc.state.list_dead_letters() == []
    [record] = svc.state.list_images(state=State.DONE)
    assert record.source["object"] == "drop/photo.jpg"
    assert "metadata.json" in harness.outputs(record.image_id)


def test_a_letter_with_nothing_to_retry_is_kept(harness: Harness) -> None:
    letter = DeadLetter("f" * 32, "legacy-task", "unavailable", "gone", 5, None, 1.0)
    assert harness.svc.state.record_dead_letter(letter)
    _, count = pipeline.retry_failed(harness.svc)
    assert count == 0
    assert harness.svc.state.list_dead_letters() == [letter]


def test_corrupt_image_fails_at_once_without_retry(harness: Harness) -> None:
    data = (corpus_dir() / "truncated.jpg").read_bytes()
    try:
        record, _ = pipeline.submit(harness.svc, data, {"upload": "truncated.jpg"})
    except Exception as exc:  # refused at the door: also a correct, permanent answer
        assert getattr(exc, "code", None) == "corrupt_image"
        return
    harness.drain()
    failed = harness.svc.state.get_image(record.image_id)
    assert failed is not None and failed.state is State.FAILED
    assert (failed.attempts, failed.error_code) == (1, "corrupt_image")
    assert harness.calls == [200]
    assert [d.attempts for d in harness.svc.state.list_dead_letters()] == [1]


def test_sweeper_requeues_stuck_images_then_dead_letters(harness: Harness) -> None:
    image_id = harness.submit()
    svc = harness.svc
    for sweep in range(pipeline.SWEEP_LIMIT + 1):
        svc.state.transition(
            image_id,
            [State.QUEUED, State.PROCESSING],
            {"state": State.PROCESSING, "started_at": harness.clock.now()},
        )
        harness.clock.advance(svc.dispatch_deadline + pipeline.SWEEP_MARGIN + 1)
        result = pipeline.sweep(svc)
        if sweep < pipeline.SWEEP_LIMIT:
            assert (result["requeued"], result["dead_lettered"]) == (1, 0)
        else:
            assert (result["requeued"], result["dead_lettered"]) == (0, 1)
    record = svc.state.get_image(image_id)
    assert record is not None and record.state is State.FAILED
    assert record.sweeps == pipeline.SWEEP_LIMIT


def test_two_deliveries_at_once_make_one_set_of_outputs(harness: Harness) -> None:
    image_id = harness.submit()
    body = json.dumps({"image_id": image_id}).encode()
    answers: list[tuple[int, str]] = []
    barrier = threading.Barrier(2)

    def deliver() -> None:
        barrier.wait()
        status, answer = tasks.process(harness.svc, {}, body)
        answers.append((status, answer.get("status") or answer["error"]["code"]))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The loser either saw the winner mid-work (409, retried later) or after it (skipped).
    assert sorted(answers)[0] == (200, "done")
    assert sorted(answers)[1] in [(200, "skipped"), (409, "conflict")]
    record = harness.svc.state.get_image(image_id)
    assert record is not None and record.state is State.DONE
    names = harness.outputs(image_id)
    assert len(names) == len(set(names)) and "metadata.json" in names


def test_changed_renditions_reprocess_stale_images(tmp_path: Path) -> None:
    first = Harness(tmp_path)
    image_id = first.submit()
    first.drain()
    second = Harness(tmp_path, IMGPIPE_RENDITIONS="100,200")
    job_id, total = pipeline.enqueue_stale(second.svc)
    assert total == 1
    second.drain()
    record = second.svc.state.get_image(image_id)
    assert record is not None and record.state is State.DONE
    assert record.fingerprint == second.svc.settings.fingerprint
    assert record.result is not None
    assert [r["name"] for r in record.result["renditions"]] == ["w100", "w100", "w200", "w200"]
    job = second.svc.state.get_job(job_id)
    assert job is not None and job.to_json()["completed_tasks"] == 1


def test_a_job_over_an_image_already_queued_still_completes(harness: Harness) -> None:
    image_id = harness.submit()  # its upload task is queued, not yet run
    job_id, total = pipeline.enqueue_ids(harness.svc, [image_id])
    assert total == 1
    harness.drain()
    job = harness.svc.state.get_job(job_id)
    assert job is not None
    view = job.to_json()
    assert view["status"] == "done"
    assert view["completed_tasks"] + view["skipped_tasks"] == 1
    names = harness.outputs(image_id)
    assert len(names) == len(set(names))
