"""FirestoreStateStore against the Firestore emulator: the same contract as the SQLite store."""

from __future__ import annotations

import threading
import uuid

import pytest
from google.cloud import firestore

from imgpipe.gcp.state import FirestoreStateStore
from imgpipe.model import DeadLetter, ImageRecord, State, TaskStatus, object_letter_key


@pytest.fixture
def store(firestore_host: str) -> FirestoreStateStore:
    # One emulator project per test: a clean database each time.
    return FirestoreStateStore(firestore.Client(project=f"t-{uuid.uuid4().hex[:12]}"))


def record(image_id: str = "a" * 32, **changes: object) -> ImageRecord:
    base = ImageRecord(
        image_id=image_id,
        state=State.QUEUED,
        source={"upload": "x.jpg", "bytes": 10, "format": "jpeg"},
        fingerprint="f1",
        created_at=100.0,
        updated_at=100.0,
    )
    return base.evolve(**changes)


def test_insert_is_create_once(store: FirestoreStateStore) -> None:
    stored, created = store.insert_image(record())
    assert created and stored == record()
    again, created = store.insert_image(record(fingerprint="other"))
    assert not created
    assert again.fingerprint == "f1"
    assert store.get_image("a" * 32) == record()
    assert store.get_image("b" * 32) is None


def test_transition_compares_state_and_match_fields(store: FirestoreStateStore) -> None:
    store.insert_image(record())
    assert store.transition("a" * 32, [State.PROCESSING], {"state": State.DONE}) is None
    started = store.transition(
        "a" * 32,
        [State.QUEUED],
        {"state": State.PROCESSING, "started_at": 5.0, "attempts": 1},
        match={"started_at": None, "generation": 0},
    )
    assert started is not None
    assert started.state is State.PROCESSING and started.started_at == 5.0
    # A takeover must match the start time it saw.
    stale = store.transition(
        "a" * 32,
        [State.PROCESSING],
        {"state": State.PROCESSING, "started_at": 9.0},
        match={"started_at": 4.0},
    )
    assert stale is None
    taken = store.transition(
        "a" * 32,
        [State.PROCESSING],
        {"state": State.PROCESSING, "started_at": 9.0},
        match={"started_at": 5.0, "generation": 0},
    )
    assert taken is not None and taken.started_at == 9.0
    assert store.get_image("a" * 32) == taken
    with pytest.raises(ValueError, match="no transition"):
        store.transition("a" * 32, [State.DONE], {"state": State.PROCESSING})
    with pytest.raises(ValueError, match="cannot change"):
        store.transition("a" * 32, [State.PROCESSING], {"nope": 1})
    assert store.transition("c" * 32, [State.QUEUED], {"state": State.PROCESSING}) is None


def test_concurrent_transitions_one_winner(store: FirestoreStateStore) -> None:
    store.insert_image(record())
    results: list[ImageRecord | None] = []
    barrier = threading.Barrier(4)

    def race(n: int) -> None:
        barrier.wait()
        results.append(
            store.transition(
                "a" * 32,
                [State.QUEUED],
                {"state": State.PROCESSING, "started_at": float(n)},
                match={"started_at": None},
            )
        )

    threads = [threading.Thread(target=race, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert store.get_image("a" * 32) == winners[0]


def test_list_and_count(store: FirestoreStateStore) -> None:
    store.insert_image(record("1" * 32, updated_at=3.0))
    store.insert_image(record("2" * 32, state=State.PROCESSING, started_at=10.0))
    store.insert_image(record("3" * 32, state=State.PROCESSING, started_at=50.0))
    store.insert_image(record("4" * 32, state=State.DONE, fingerprint="old"))
    store.insert_image(record("5" * 32, state=State.DONE))
    stuck = store.list_images(state=State.PROCESSING, started_before=20.0)
    assert [r.image_id for r in stuck] == ["2" * 32]
    stale = store.list_images(state=State.DONE, not_fingerprint="f1")
    assert [r.image_id for r in stale] == ["4" * 32]
    assert {r.image_id for r in store.list_images(state=State.QUEUED)} == {"1" * 32}
    assert len(store.list_images(limit=2)) == 2
    assert store.count_by_state() == {"queued": 1, "processing": 2, "done": 2, "failed": 0}


def test_jobs_count_each_task_once(store: FirestoreStateStore) -> None:
    store.create_job("job1", "nightly", 7.0)
    store.create_job("job1", "again", 8.0)  # idempotent
    assert store.add_job_task("job1", "a" * 32, "a" * 32)
    assert not store.add_job_task("job1", "a" * 32, "a" * 32)
    assert store.add_job_task("job1", "uploads/x/y.jpg", None)  # '/' in the key
    assert store.add_job_task("job1", "b" * 32, "b" * 32)
    assert store.finish_job_task("job1", "a" * 32, TaskStatus.DONE)
    assert not store.finish_job_task("job1", "a" * 32, TaskStatus.FAILED)
    assert store.finish_job_task("job1", "uploads/x/y.jpg", TaskStatus.SKIPPED)
    assert not store.finish_job_task("job1", "missing", TaskStatus.DONE)
    job = store.get_job("job1")
    assert job is not None
    assert (job.name, job.created_at, job.total_tasks) == ("nightly", 7.0, 3)
    assert job.counts == {"done": 1, "skipped": 1, "pending": 1}
    assert job.to_json()["progress_percentage"] == pytest.approx(66.7)
    assert store.get_job("nope") is None


def test_dead_letters(store: FirestoreStateStore) -> None:
    store.insert_image(record(state=State.PROCESSING, attempts=2))
    letter = DeadLetter("a" * 32, "task-1", "unavailable", "boom", 3, 1.0, 20.0)
    assert store.record_dead_letter(letter)
    assert not store.record_dead_letter(letter)  # idempotent by task name
    image = store.get_image("a" * 32)
    assert image is not None
    assert (image.state, image.attempts, image.error_code) == (State.FAILED, 3, "unavailable")
    other = DeadLetter("b" * 32, "task-2", "corrupt_image", "bad", 1, None, 30.0, "in/b.jpg")
    assert store.record_dead_letter(other)  # no image record: the letter alone
    assert [d.task_name for d in store.list_dead_letters()] == ["task-2", "task-1"]
    assert store.list_dead_letters(limit=1) == [other]
    assert store.remove_dead_letters(["task-2", "no-such-task"]) == 1
    assert store.list_dead_letters() == [letter]
    assert store.remove_image_letters("a" * 32) == 1
    assert store.purge_image("a" * 32)
    assert store.get_image("a" * 32) is None
    assert store.list_dead_letters() == []
    assert not store.purge_image("a" * 32)


def test_dead_letter_of_an_object_with_slashes_is_kept(store: FirestoreStateStore) -> None:
    # Signed-upload objects are named `<uuid>/<file name>`: the letter's key must still work.
    key = object_letter_key("3f2a/holiday photos/IMG_0001.HEIC")
    letter = DeadLetter(key, "obj-task", "unsupported_format", "x", 1, 1.0, 2.0, "3f2a/x")
    assert store.record_dead_letter(letter)
    assert [d.image_id for d in store.list_dead_letters()] == [key]
    assert store.remove_dead_letters(["obj-task"]) == 1


def test_a_late_letter_never_fails_a_newer_attempt(store: FirestoreStateStore) -> None:
    store.insert_image(record(state=State.PROCESSING, generation=3, started_at=50.0))
    stale = DeadLetter("a" * 32, "old", "unavailable", "x", 5, 1.0, 9.0, generation=2)
    assert not store.record_dead_letter(stale)
    late = DeadLetter("a" * 32, "t", "unavailable", "x", 5, 1.0, 9.0, generation=3, started_at=1.0)
    assert not store.record_dead_letter(late)
    image = store.get_image("a" * 32)
    assert image is not None and image.state is State.PROCESSING
    assert store.list_dead_letters() == []
