""" "Nothing lost": each numbered fault of the issue, injected around the real local adapters
(SQLite state and queue, file stores) with `Faulty` wrappers or at the task doors, never by
patching the code under test. Each test failed on the code before the fix."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from corpus import corpus_dir
from imgpipe import pipeline, tasks
from imgpipe.errors import NotFound, TransientError
from imgpipe.model import DeadLetter, State
from imgpipe.pipeline.services import QUEUED_MARGIN, SUPERSEDED_GRACE, SWEEP_MARGIN
from localharness import PHOTO, Harness


def _photo(name: str = PHOTO) -> bytes:
    return (corpus_dir() / name).read_bytes()


def _state(h: Harness, image_id: str) -> State | None:
    record = h.svc.state.get_image(image_id)
    return None if record is None else record.state


def _sweep_later(h: Harness, seconds: float = QUEUED_MARGIN + 1) -> dict[str, int]:
    h.clock.advance(seconds)
    return pipeline.sweep(h.svc)


# -- 4. images stranded in `queued` ------------------------------------------------------------


def test_a_task_create_that_fails_after_register_is_created_by_the_clients_retry(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    h.tasks.fail("create", 1)
    with pytest.raises(TransientError):
        pipeline.submit(h.svc, _photo(), {"upload": PHOTO})
    # The client (or Eventarc) tries again: the image is known and queued, and its task is
    # created now instead of "queued" being answered for an image that has none.
    record, queued = pipeline.submit(h.svc, _photo(), {"upload": PHOTO})
    assert queued and record.state is State.QUEUED
    h.drain()
    assert _state(h, record.image_id) is State.DONE


def test_the_sweeper_repairs_a_queued_image_whose_task_was_never_created(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    h.tasks.fail("create", 1)  # as a crash between the state and the queue databases would
    with pytest.raises(TransientError):
        pipeline.submit(h.svc, _photo(), {"upload": PHOTO})
    [record] = h.svc.state.list_images(state=State.QUEUED)
    h.drain()
    assert _state(h, record.image_id) is State.QUEUED  # nothing carries it
    assert pipeline.sweep(h.svc)["requeued"] == 0  # not before the margin
    assert _sweep_later(h)["requeued"] == 1
    h.drain()
    assert _state(h, record.image_id) is State.DONE


def test_a_dead_letter_task_that_cannot_be_created_is_recorded_by_the_sweeper(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, failures=10**6)
    job_id = pipeline.new_job(h.svc, "batch")
    record, _ = pipeline.submit(h.svc, _photo(), {"upload": PHOTO}, job_id=job_id)
    h.tasks.fail("create", -1, when=lambda task: task.target == "failure")
    h.drain()
    assert _state(h, record.image_id) is State.QUEUED
    assert h.svc.state.list_dead_letters() == []
    assert _sweep_later(h)["dead_lettered"] == 1
    [letter] = h.svc.state.list_dead_letters()
    assert (letter.image_id, letter.attempts, letter.error_code) == (
        record.image_id,
        5,
        "unavailable",
    )
    assert _state(h, record.image_id) is State.FAILED
    job = h.svc.state.get_job(job_id)
    assert job is not None and job.to_json()["status"] == "done"
    assert job.to_json()["failed_tasks"] == 1


def test_a_failure_callback_failing_on_every_attempt_loses_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path, failures=10**6)
    record, _ = pipeline.submit(h.svc, _photo(), {"upload": PHOTO})
    h.failure_gate = lambda headers: 503
    h.drain()
    assert h.svc.state.list_dead_letters() == []
    assert _state(h, record.image_id) is State.QUEUED
    _sweep_later(h)
    [letter] = h.svc.state.list_dead_letters()
    assert letter.image_id == record.image_id
    assert _state(h, record.image_id) is State.FAILED
    # The callback recovers and delivers the same letter late: stored once.
    h.failure_gate = lambda headers: None
    body = {
        "image_id": record.image_id,
        "task_name": letter.task_name,
        "attempts": 5,
        "error": {"code": "unavailable", "message": "x"},
    }
    assert tasks.record_failure(h.svc, json.dumps(body).encode())[1]["new"] is False
    assert len(h.svc.state.list_dead_letters()) == 1


def test_a_last_attempt_that_never_reaches_the_worker_is_repaired(tmp_path: Path) -> None:
    h = Harness(tmp_path, failures=1)
    record, _ = pipeline.submit(h.svc, _photo(), {"upload": PHOTO})
    # The first attempt fails in the worker; every later one is refused at the door, as Cloud
    # Run answers 429 at max instances: the queue gives up and the worker never knew.
    h.worker_gate = lambda headers: 429 if headers["X-CloudTasks-TaskRetryCount"] != "0" else None
    h.drain()
    assert h.calls == [503, 429, 429, 429, 429]
    assert _state(h, record.image_id) is State.QUEUED
    h.worker_gate = lambda headers: None
    assert _sweep_later(h, 400)["requeued"] == 1
    h.drain()
    done = h.svc.state.get_image(record.image_id)
    assert done is not None and done.state is State.DONE and done.sweeps == 1


def test_the_last_attempt_comes_from_the_queues_stored_settings(tmp_path: Path) -> None:
    h = Harness(tmp_path, failures=10**6, IMGPIPE_MAX_ATTEMPTS="5")
    for name in ("high", "normal"):
        h.queue.update_queue(name, max_attempts=2)  # `imgpipe queue update`, after start
    record, _ = pipeline.submit(h.svc, _photo(), {"upload": PHOTO})
    h.drain()
    assert h.calls == [503, 503]
    [letter] = h.svc.state.list_dead_letters()
    assert letter.attempts == 2
    assert _state(h, record.image_id) is State.FAILED


# -- 5. a crashed attempt is taken over at once by the task's next attempt ----------------------


def test_the_next_attempt_of_the_same_task_takes_over_a_crashed_one(harness: Harness) -> None:
    record, _ = pipeline.submit(harness.svc, _photo(), {"upload": PHOTO})
    assert record.task_name is None or record.task_name  # set by enqueue
    current = harness.svc.state.get_image(record.image_id)
    assert current is not None and current.task_name is not None
    name = current.task_name
    # The first attempt started, then its process died (its lease was released at restart).
    started = harness.svc.state.transition(
        record.image_id,
        [State.QUEUED],
        {
            "state": State.PROCESSING,
            "started_at": harness.clock.now(),
            "started_by": name,
            "attempts": 1,
        },
    )
    assert started is not None
    harness.clock.advance(10)  # min_backoff, far less than the dispatch deadline
    headers = {"x-cloudtasks-taskname": name, "x-cloudtasks-taskretrycount": "1"}
    body = json.dumps({"image_id": record.image_id}).encode()
    status, answer = tasks.process(harness.svc, headers, body)
    assert (status, answer["status"]) == (200, "done")
    # Another task, though, must wait for the dispatch deadline.
    assert _state(harness, record.image_id) is State.DONE


def test_another_task_does_not_take_over_a_live_attempt(harness: Harness) -> None:
    record, _ = pipeline.submit(harness.svc, _photo(), {"upload": PHOTO})
    harness.svc.state.transition(
        record.image_id,
        [State.QUEUED],
        {"state": State.PROCESSING, "started_at": harness.clock.now(), "started_by": "a"},
    )
    headers = {"x-cloudtasks-taskname": "b", "x-cloudtasks-taskretrycount": "3"}
    body = json.dumps({"image_id": record.image_id}).encode()
    status, answer = tasks.process(harness.svc, headers, body)
    assert (status, answer["error"]["code"]) == (409, "conflict")


# -- 6. reprocessing rewrites metadata.json, immutable URLs stay immutable -------------------


def test_reprocess_rewrites_metadata_and_keeps_old_urls_until_the_grace_ends(
    tmp_path: Path,
) -> None:
    first = Harness(tmp_path)
    image_id = first.submit()
    first.drain()
    meta_path = first.files.root / "processed" / image_id / "metadata.json"
    old = json.loads(meta_path.read_text())
    old_files = {
        r["file"]: (first.files.root / "processed" / image_id / r["file"]).read_bytes()
        for r in old["renditions"]
    }
    second = Harness(tmp_path, IMGPIPE_RENDITIONS="100,200")
    second.clock.advance(first.clock.now() - second.clock.now())
    _, total = pipeline.enqueue_stale(second.svc)
    assert total == 1
    second.drain()
    new = json.loads(meta_path.read_text())
    assert new["fingerprint"] == second.svc.settings.fingerprint != old["fingerprint"]
    assert sorted(r["name"] for r in new["renditions"]) == ["w100", "w100", "w200", "w200"]
    assert not set(old_files) & {r["file"] for r in new["renditions"]}
    assert pipeline.is_current(second.svc, second.svc.state.get_image(image_id))  # type: ignore[arg-type]
    # The old URLs still serve their old bytes during the grace period...
    folder = second.files.root / "processed" / image_id
    for name, data in old_files.items():
        assert (folder / name).read_bytes() == data
    second.clock.advance(SUPERSEDED_GRACE + 1)
    assert pipeline.sweep(second.svc)["cleaned"] == len(old_files)
    # ...and are gone after it; the new ones stay.
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*(r["file"] for r in new["renditions"]), "metadata.json"]
    )


# -- 7. a delete wins against a worker that is rendering the image --------------------------------


def test_a_delete_during_rendering_wins(harness: Harness) -> None:
    image_id = harness.submit()

    def delete_now(path: str, *args: object, **kwargs: object) -> bool:
        pipeline.delete_image(harness.svc, image_id)
        return True  # once

    harness.blobs.before("put", delete_now)
    harness.drain()
    assert harness.outputs(image_id) == []
    with pytest.raises(NotFound):
        pipeline.image_view(harness.svc, image_id)
    pipeline.delete_image(harness.svc, image_id)  # a second DELETE is fine, not a 404
    harness.clock.advance(harness.svc.dispatch_deadline + SWEEP_MARGIN + 1)
    assert pipeline.sweep(harness.svc)["purged"] == 1
    with pytest.raises(NotFound):
        pipeline.delete_image(harness.svc, image_id)
    assert not (harness.svc.originals.exists(f"originals/{image_id}"))  # type: ignore[attr-defined]


def test_the_same_bytes_after_a_delete_are_a_new_image(harness: Harness) -> None:
    image_id = harness.submit()
    harness.drain()
    pipeline.delete_image(harness.svc, image_id)
    record, queued = pipeline.submit(harness.svc, _photo(), {"upload": PHOTO})
    assert queued and record.state is State.QUEUED
    harness.drain()
    assert _state(harness, image_id) is State.DONE
    assert "metadata.json" in harness.outputs(image_id)


# -- 8. failure paths compare the attempt, not only the state --------------------------------


def test_an_older_attempts_failure_never_touches_a_newer_attempt(harness: Harness) -> None:
    image_id = harness.submit()
    harness.blobs.fail("put", 1)

    def newer_attempt(*args: object, **kwargs: object) -> bool:
        record = harness.svc.state.get_image(image_id)
        assert record is not None
        # Meanwhile the sweeper (or a reprocess) moved the image to a new generation.
        harness.svc.state.transition(
            image_id,
            [State.PROCESSING],
            {"state": State.QUEUED, "generation": record.generation + 1, "started_at": None},
        )
        return True

    harness.blobs.before("put", newer_attempt)
    harness.dispatcher.run_until_idle(timeout=60)
    record = harness.svc.state.get_image(image_id)
    assert record is not None
    assert (record.state, record.error_code, record.attempts) == (State.QUEUED, None, 1)


def test_a_late_dead_letter_never_fails_a_newer_attempt(harness: Harness) -> None:
    image_id = harness.submit()
    harness.drain()
    record = harness.svc.state.get_image(image_id)
    assert record is not None and record.state is State.DONE
    body = {
        "image_id": image_id,
        "task_name": "an-old-attempt",
        "attempts": 5,
        "generation": record.generation - 1,
        "error": {"code": "unavailable", "message": "late"},
    }
    tasks.record_failure(harness.svc, json.dumps(body).encode())
    assert _state(harness, image_id) is State.DONE
    assert harness.svc.state.list_dead_letters() == []


# -- 9. `failed retry` removes exactly what it re-enqueued -----------------------------------


def test_failed_retry_keeps_letters_of_images_that_fail_again_meanwhile(tmp_path: Path) -> None:
    h = Harness(tmp_path, failures=10**6)
    image_id = h.submit()
    h.drain()
    [first] = h.svc.state.list_dead_letters()

    def fails_again(*args: object, **kwargs: object) -> bool:
        letter = dataclasses.replace(first, task_name="retry-attempt-failed", last_attempt_at=9e9)
        assert h.svc.state.record_dead_letter(dataclasses.replace(letter, generation=None))
        return True

    h.state.before("remove_dead_letters", fails_again)
    _, count = pipeline.retry_failed(h.svc, [image_id])
    assert count == 1
    assert [d.task_name for d in h.svc.state.list_dead_letters()] == ["retry-attempt-failed"]


# -- 10. the sweeper keeps jobs whole, retries reset the sweep count -------------------------


def test_a_swept_image_still_counts_for_its_job_and_a_buried_one_closes_it(
    harness: Harness,
) -> None:
    svc = harness.svc
    image_id = harness.submit()
    harness.drain()
    job_id, _ = pipeline.enqueue_ids(svc, [image_id])  # done: skipped, counted
    job = svc.state.get_job(job_id)
    assert job is not None
    # A job over a failed image: re-enqueued, then stuck in processing for ever.
    second = pipeline.submit(svc, _photo("Landscape_3.jpg"), {"upload": "l3.jpg"})[0]
    svc.state.transition(second.image_id, [State.QUEUED], {"state": State.FAILED})
    job_id, _ = pipeline.enqueue_ids(svc, [second.image_id])
    harness.worker_gate = lambda headers: 0  # never answers: as a worker that hangs
    for round_ in range(pipeline.SWEEP_LIMIT + 1):
        record = svc.state.get_image(second.image_id)
        assert record is not None
        svc.state.transition(
            second.image_id,
            [State.QUEUED],
            {"state": State.PROCESSING, "started_at": harness.clock.now()},
        )
        harness.clock.advance(svc.dispatch_deadline + SWEEP_MARGIN + 1)
        result = pipeline.sweep(svc)
        moved = svc.state.get_image(second.image_id)
        assert moved is not None and moved.job_id == job_id, round_
    assert result["dead_lettered"] == 1
    job = svc.state.get_job(job_id)
    assert job is not None and job.to_json()["status"] == "done"
    assert job.to_json()["failed_tasks"] == 1
    [letter] = svc.state.list_dead_letters()
    assert letter.first_attempt_at is not None
    # An operator's retry starts the sweep count again.
    harness.worker_gate = lambda headers: None
    pipeline.retry_failed(svc, [second.image_id])
    record = svc.state.get_image(second.image_id)
    assert record is not None and record.sweeps == 0
    harness.drain()
    assert _state(harness, second.image_id) is State.DONE


def test_dead_letters_record_the_first_attempt_time(tmp_path: Path) -> None:
    h = Harness(tmp_path, failures=10**6)
    start = h.clock.now()
    h.submit()
    h.drain()
    [letter] = h.svc.state.list_dead_letters()
    assert letter.first_attempt_at == pytest.approx(start, abs=1)
    assert letter.last_attempt_at - letter.first_attempt_at == pytest.approx(
        10 + 20 + 40 + 80, abs=2
    )


# -- 13. enqueue by prefix: any name, paged, answered at once -----------------------------------


NAMES = ["café.jpg", "dir with space/#1 %.jpg", "日本/写真.jpg", "plain.jpg", "x/y/z.jpg"]


def test_enqueue_by_prefix_takes_any_name_in_pages_and_adds_nothing_twice(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    svc = dataclasses.replace(h.svc, page_size=2)
    h.svc = svc
    assert svc.uploads is not None
    photos = [
        "baseline_mongolia.jpeg",
        "Landscape_3.jpg",
        "Landscape_1.jpg",
        "webp_lossy.webp",
        "gif_still_crash_test.gif",
    ]
    for name, photo in zip(NAMES, photos, strict=True):
        svc.uploads.put(f"in/{name}", _photo(photo), content_type="image/jpeg")
    with pytest.raises(Exception, match="all"):
        pipeline.enqueue_prefix(svc, "")
    job_id = pipeline.enqueue_prefix(svc, "in/")
    job = svc.state.get_job(job_id)
    assert job is not None and job.to_json()["status"] == "running"  # answered before listing
    # Run each page task twice, as a retried page would be.
    for _ in range(10):
        pages = [
            t
            for t in h.tasks.calls
            if t[0] == "create" and t[1][0].target == "worker" and b'"list"' in t[1][0].body
        ]
        if not pages:
            break
        h.tasks.calls.clear()
        for _, (task,) in pages:
            ctx = pipeline.TaskContext(task.name, task.queue)
            pipeline.process_task(svc, task.body, ctx)
    h.drain()
    job = svc.state.get_job(job_id)
    assert job is not None
    view = job.to_json()
    assert (view["status"], view["total_tasks"], view["completed_tasks"]) == ("done", 5, 5)
    done = {r.source["object"] for r in svc.state.list_images(state=State.DONE)}
    assert done == {f"in/{n}" for n in NAMES}
    # Everything again, explicitly: already done, skipped.
    job_id = pipeline.enqueue_prefix(svc, "", everything=True)
    h.drain()
    job = svc.state.get_job(job_id)
    assert job is not None and job.to_json()["skipped_tasks"] == 5


# -- letters of objects that never became images -----------------------------------------------


def test_an_object_letter_has_a_key_that_any_store_takes(harness: Harness) -> None:
    body = {
        "object": "3f2a/holiday photos/IMG 1.jpg",
        "task_name": "t-obj",
        "attempts": 5,
        "error": {"code": "unavailable", "message": "x"},
    }
    assert tasks.record_failure(harness.svc, json.dumps(body).encode())[1]["new"] is True
    [letter] = harness.svc.state.list_dead_letters()
    assert letter.source_object == body["object"] and "/" not in letter.image_id
    assert isinstance(letter, DeadLetter)
