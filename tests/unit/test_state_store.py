import sqlite3
import threading
from pathlib import Path

from imgpipe.local import state as state_module
from imgpipe.local.blobs import FileBlobStore
from imgpipe.local.state import SqliteStateStore
from imgpipe.model import DeadLetter, ImageRecord, State, TaskStatus


def _record(image_id: str = "a" * 32) -> ImageRecord:
    return ImageRecord(
        image_id=image_id,
        state=State.QUEUED,
        source={"path": "/x.jpg", "bytes": 3},
        fingerprint="f1",
        created_at=1.0,
        updated_at=1.0,
    )


def test_insert_is_idempotent(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    first, created = store.insert_image(_record())
    again, created_again = store.insert_image(_record().evolve(fingerprint="other"))
    assert created and not created_again
    assert again.fingerprint == "f1" == first.fingerprint


def test_transition_is_compare_and_set(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    store.insert_image(_record())
    moved = store.transition("a" * 32, [State.QUEUED], {"state": State.PROCESSING})
    assert moved is not None and moved.state is State.PROCESSING
    assert store.transition("a" * 32, [State.QUEUED], {"state": State.PROCESSING}) is None


def test_only_one_of_many_racing_transitions_wins(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    store.insert_image(_record())
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        result = store.transition("a" * 32, [State.QUEUED], {"state": State.PROCESSING})
        wins.append(result is not None)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]


def test_job_tasks_count_once(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    store.create_job("j", "name", 1.0)
    assert store.add_job_task("j", "k1", None)
    assert not store.add_job_task("j", "k1", None)
    store.add_job_task("j", "k2", None)
    assert store.finish_job_task("j", "k1", TaskStatus.DONE)
    assert not store.finish_job_task("j", "k1", TaskStatus.DONE)
    job = store.get_job("j")
    assert job is not None
    assert job.to_json()["total_tasks"] == 2
    assert job.to_json()["completed_tasks"] == 1
    assert job.to_json()["progress_percentage"] == 50.0


def test_dead_letter_marks_image_failed_once(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    store.insert_image(_record())
    letter = DeadLetter("a" * 32, "task-1", "unavailable", "down", 5, 1.0, 9.0)
    assert store.record_dead_letter(letter)
    assert not store.record_dead_letter(letter)
    image = store.get_image("a" * 32)
    assert image is not None and image.state is State.FAILED
    assert [d.task_name for d in store.list_dead_letters()] == ["task-1"]
    newer = DeadLetter("a" * 32, "task-2", "unavailable", "down again", 5, 10.0, 19.0)
    assert store.record_dead_letter(newer)
    # Removing by task name removes exactly that letter, not every letter of the image.
    assert store.remove_dead_letters(["task-1"]) == 1
    assert [d.task_name for d in store.list_dead_letters()] == ["task-2"]


def test_a_letter_about_an_older_attempt_does_not_touch_a_newer_one(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    store.insert_image(_record())
    moved = store.transition(
        "a" * 32, [State.QUEUED], {"generation": 2, "started_at": 50.0, "state": State.QUEUED}
    )
    assert moved is not None
    stale = DeadLetter("a" * 32, "old", "unavailable", "x", 5, 1.0, 9.0, generation=1)
    assert not store.record_dead_letter(stale)
    late = DeadLetter("a" * 32, "t", "unavailable", "x", 5, 1.0, 9.0, generation=2, started_at=4.0)
    assert not store.record_dead_letter(late)
    image = store.get_image("a" * 32)
    assert image is not None and image.state is State.QUEUED
    assert store.list_dead_letters() == []
    current = DeadLetter("a" * 32, "t", "unavailable", "x", 5, 1.0, 9.0, 2, started_at=50.0)
    assert store.record_dead_letter(current)
    image = store.get_image("a" * 32)
    assert image is not None and image.state is State.FAILED


def test_dead_letter_keeps_its_source_object_across_a_schema_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a store written before letters kept their object
        conn.executescript(state_module._MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    store = SqliteStateStore(path)
    letter = DeadLetter("b" * 32, "ingest-1", "unsupported_format", "x", 1, 2.0, 2.0, "in/x.jpg")
    assert store.record_dead_letter(letter)
    assert SqliteStateStore(path).list_dead_letters() == [letter]


def test_state_survives_reopening(tmp_path: Path) -> None:
    SqliteStateStore(tmp_path / "s.db").insert_image(_record())
    assert SqliteStateStore(tmp_path / "s.db").get_image("a" * 32) is not None


def test_blob_store_writes_once(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path, url_prefix="/files")
    assert blobs.put("p/x.jpg", b"one", content_type="image/jpeg")
    assert not blobs.put("p/x.jpg", b"two", content_type="image/jpeg")
    assert blobs.get("p/x.jpg") == b"one"
    assert [b.path for b in blobs.list("p/")] == ["p/x.jpg"]
    assert blobs.url("p/x.jpg") == "/files/p/x.jpg"
    assert blobs.delete_prefix("p/") == 1
    assert not blobs.exists("p/x.jpg")
