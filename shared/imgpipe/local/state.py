"""The state store on SQLite: images, jobs with per-task records, dead letters."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from imgpipe import cursor as cursors
from imgpipe.local.sqlite import Database
from imgpipe.model import (
    RATE_WINDOW,
    VISIBLE_STATES,
    DeadLetter,
    ImageRecord,
    JobRecord,
    State,
    TaskStatus,
    check_transition,
)

_MIGRATIONS = (
    """
    CREATE TABLE images (
        image_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        source TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        generation INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        started_at REAL,
        error_code TEXT,
        error_message TEXT,
        sweeps INTEGER NOT NULL DEFAULT 0,
        result TEXT
    );
    CREATE INDEX images_state ON images (state, started_at);
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        name TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE job_tasks (
        job_id TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
        task_key TEXT NOT NULL,
        image_id TEXT,
        status TEXT NOT NULL,
        PRIMARY KEY (job_id, task_key)
    );
    CREATE TABLE failed_tasks (
        task_name TEXT PRIMARY KEY,
        image_id TEXT NOT NULL,
        error_code TEXT NOT NULL,
        error_message TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        first_attempt_at REAL,
        last_attempt_at REAL NOT NULL
    );
    CREATE INDEX failed_by_image ON failed_tasks (image_id)
    """,
    "ALTER TABLE failed_tasks ADD COLUMN source_object TEXT",
    # The live task of each image, the attempt that runs it, superseded outputs, tombstones;
    # jobs still walking a listing.
    """
    ALTER TABLE images ADD COLUMN task_name TEXT;
    ALTER TABLE images ADD COLUMN task_queue TEXT;
    ALTER TABLE images ADD COLUMN job_id TEXT;
    ALTER TABLE images ADD COLUMN job_key TEXT;
    ALTER TABLE images ADD COLUMN started_by TEXT;
    ALTER TABLE images ADD COLUMN first_attempt_at REAL;
    ALTER TABLE images ADD COLUMN superseded TEXT;
    ALTER TABLE images ADD COLUMN cleanup_at REAL;
    CREATE INDEX images_updated ON images (state, updated_at);
    CREATE INDEX images_cleanup ON images (cleanup_at) WHERE cleanup_at IS NOT NULL;
    ALTER TABLE jobs ADD COLUMN listing INTEGER NOT NULL DEFAULT 0
    """,
    # Listings newest first, focal points, and when each job task finished (ETAs).
    """
    ALTER TABLE images ADD COLUMN focus TEXT;
    CREATE INDEX images_created ON images (created_at, image_id);
    CREATE INDEX images_state_created ON images (state, created_at, image_id);
    CREATE INDEX jobs_created ON jobs (created_at, job_id);
    ALTER TABLE job_tasks ADD COLUMN finished_at REAL;
    CREATE INDEX job_tasks_finished ON job_tasks (job_id, finished_at);
    ALTER TABLE failed_tasks ADD COLUMN payload TEXT
    """,
)

_JSON_FIELDS = {"source", "result", "superseded", "focus"}
_IMAGE_FIELDS = tuple(f.name for f in fields(ImageRecord))


def _encode(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return None if value is None else json.dumps(value, sort_keys=True)
    if isinstance(value, State):
        return value.value
    return value


def _image(row: sqlite3.Row) -> ImageRecord:
    values = {name: row[name] for name in _IMAGE_FIELDS}
    values["state"] = State(values["state"])
    for name in _JSON_FIELDS:
        if values[name] is not None:
            values[name] = json.loads(values[name])
    return ImageRecord(**values)


class SqliteStateStore:
    def __init__(self, path: Path) -> None:
        self._db = Database(path, _MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def get_image(self, image_id: str) -> ImageRecord | None:
        row = self._db.conn.execute(
            "SELECT * FROM images WHERE image_id = ?", (image_id,)
        ).fetchone()
        return None if row is None else _image(row)

    def insert_image(self, record: ImageRecord) -> tuple[ImageRecord, bool]:
        columns = ", ".join(_IMAGE_FIELDS)
        marks = ", ".join("?" for _ in _IMAGE_FIELDS)
        values = [_encode(name, getattr(record, name)) for name in _IMAGE_FIELDS]
        with self._db.transaction() as conn:
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO images ({columns}) VALUES ({marks})",  # noqa: S608
                values,
            )
            row = conn.execute(
                "SELECT * FROM images WHERE image_id = ?", (record.image_id,)
            ).fetchone()
        return _image(row), cursor.rowcount == 1

    def transition(
        self,
        image_id: str,
        expect: Iterable[State],
        changes: Mapping[str, Any],
        *,
        match: Mapping[str, Any] | None = None,
    ) -> ImageRecord | None:
        match = match or {}
        unknown = (set(changes) | set(match)) - set(_IMAGE_FIELDS)
        if unknown or "image_id" in changes:
            raise ValueError(f"cannot change {sorted(unknown | {'image_id'} & set(changes))}")
        expect = list(expect)
        if "state" in changes:
            check_transition(expect, State(changes["state"]))
        states = [State(s).value for s in expect]
        assignments = ", ".join(f"{name} = ?" for name in changes)
        values = [_encode(name, value) for name, value in changes.items()]
        marks = ", ".join("?" for _ in states)
        # `IS` rather than `=`: matching a NULL must work too.
        extra = "".join(f" AND {name} IS ?" for name in match)
        extra_values = [_encode(name, value) for name, value in match.items()]
        with self._db.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE images SET {assignments}"  # noqa: S608
                f" WHERE image_id = ? AND state IN ({marks}){extra}",
                [*values, image_id, *states, *extra_values],
            )
            if cursor.rowcount != 1:
                return None
            row = conn.execute("SELECT * FROM images WHERE image_id = ?", (image_id,)).fetchone()
        return _image(row)

    def purge_image(self, image_id: str) -> bool:
        with self._db.transaction() as conn:
            cursor = conn.execute("DELETE FROM images WHERE image_id = ?", (image_id,))
        return cursor.rowcount == 1

    def list_images(
        self,
        *,
        state: State | None = None,
        not_fingerprint: str | None = None,
        started_before: float | None = None,
        updated_before: float | None = None,
        cleanup_before: float | None = None,
        limit: int = 1000,
    ) -> list[ImageRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        if state is not None:
            clauses.append("state = ?")
            params.append(state.value)
        elif cleanup_before is None:
            clauses.append("state != ?")
            params.append(State.DELETED.value)
        if updated_before is not None:
            clauses.append("updated_at < ?")
            params.append(updated_before)
        if cleanup_before is not None:
            clauses.append("cleanup_at < ?")
            params.append(cleanup_before)
        if not_fingerprint is not None:
            clauses.append("fingerprint != ?")
            params.append(not_fingerprint)
        if started_before is not None:
            clauses.append("started_at < ?")
            params.append(started_before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.conn.execute(
            f"SELECT * FROM images {where} ORDER BY updated_at LIMIT ?",  # noqa: S608
            [*params, limit],
        ).fetchall()
        return [_image(row) for row in rows]

    def count_by_state(self) -> dict[str, int]:
        rows = self._db.conn.execute("SELECT state, COUNT(*) FROM images GROUP BY state")
        counts = {state.value: 0 for state in VISIBLE_STATES}
        counts.update({row[0]: row[1] for row in rows if row[0] != State.DELETED.value})
        return counts

    def page_images(
        self, *, state: State | None, limit: int, cursor: str | None
    ) -> tuple[list[ImageRecord], str | None]:
        clauses = ["state = ?" if state is not None else "state != ?"]
        params: list[Any] = [state.value if state is not None else State.DELETED.value]
        if cursor is not None:
            created, key = cursors.decode(cursor)
            clauses.append("(created_at < ? OR (created_at = ? AND image_id < ?))")
            params += [created, created, key]
        rows = self._db.conn.execute(
            f"SELECT * FROM images WHERE {' AND '.join(clauses)} "  # noqa: S608
            "ORDER BY created_at DESC, image_id DESC LIMIT ?",
            [*params, limit + 1],
        ).fetchall()
        records = [_image(row) for row in rows[:limit]]
        more = len(rows) > limit
        last = records[-1] if records else None
        return records, cursors.encode(last.created_at, last.image_id) if more and last else None

    def count_done_since(self, since: float) -> int:
        row = self._db.conn.execute(
            "SELECT count(*) FROM images WHERE state = ? AND updated_at >= ?",
            (State.DONE.value, since),
        ).fetchone()
        return int(row[0])

    def count_dead_letters(self) -> int:
        return int(self._db.conn.execute("SELECT count(*) FROM failed_tasks").fetchone()[0])

    def page_jobs(self, *, limit: int, cursor: str | None) -> tuple[list[JobRecord], str | None]:
        where, params = "", []
        if cursor is not None:
            created, key = cursors.decode(cursor)
            where = "WHERE created_at < ? OR (created_at = ? AND job_id < ?)"
            params = [created, created, key]
        rows = self._db.conn.execute(
            f"SELECT job_id FROM jobs {where} "  # noqa: S608
            "ORDER BY created_at DESC, job_id DESC LIMIT ?",
            [*params, limit + 1],
        ).fetchall()
        jobs = [job for row in rows[:limit] if (job := self.get_job(row[0])) is not None]
        last = jobs[-1] if jobs else None
        more = len(rows) > limit
        return jobs, cursors.encode(last.created_at, last.job_id) if more and last else None

    def create_job(
        self, job_id: str, name: str | None, created_at: float, *, listing: bool = False
    ) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO jobs (job_id, name, created_at, listing)"
                " VALUES (?, ?, ?, ?)",
                (job_id, name, created_at, int(listing)),
            )

    def finish_listing(self, job_id: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE jobs SET listing = 0 WHERE job_id = ?", (job_id,))

    def add_job_task(self, job_id: str, task_key: str, image_id: str | None) -> bool:
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO job_tasks (job_id, task_key, image_id, status)"
                " VALUES (?, ?, ?, ?)",
                (job_id, task_key, image_id, TaskStatus.PENDING.value),
            )
        return cursor.rowcount == 1

    def finish_job_task(
        self, job_id: str, task_key: str, status: TaskStatus, at: float | None = None
    ) -> bool:
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE job_tasks SET status = ?, finished_at = ?"
                " WHERE job_id = ? AND task_key = ? AND status = ?",
                (status.value, at, job_id, task_key, TaskStatus.PENDING.value),
            )
        return cursor.rowcount == 1

    def get_job(self, job_id: str, now: float | None = None) -> JobRecord | None:
        conn = self._db.conn
        row = conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        counts = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT status, COUNT(*) FROM job_tasks WHERE job_id = ? GROUP BY status",
                (job_id,),
            )
        }
        recent = 0
        if now is not None:
            recent = conn.execute(
                "SELECT count(*) FROM job_tasks WHERE job_id = ? AND finished_at >= ?",
                (job_id, now - RATE_WINDOW),
            ).fetchone()[0]
        return JobRecord(
            job_id=row["job_id"],
            name=row["name"],
            created_at=row["created_at"],
            total_tasks=sum(counts.values()),
            counts=counts,
            listing=bool(row["listing"]),
            recent=int(recent),
        )

    def record_dead_letter(self, letter: DeadLetter) -> bool:
        with self._db.transaction() as conn:
            image = conn.execute(
                "SELECT generation, started_at, state FROM images WHERE image_id = ?",
                (letter.image_id,),
            ).fetchone()
            if image is not None and letter.generation is not None:
                moved_on = image["generation"] != letter.generation or (
                    letter.started_at is not None and image["started_at"] != letter.started_at
                )
                if moved_on or image["state"] == State.DELETED.value:
                    return False
            cursor = conn.execute(
                "INSERT OR IGNORE INTO failed_tasks (task_name, image_id, error_code,"
                " error_message, attempts, first_attempt_at, last_attempt_at, source_object,"
                " payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    letter.task_name,
                    letter.image_id,
                    letter.error_code,
                    letter.error_message,
                    letter.attempts,
                    letter.first_attempt_at,
                    letter.last_attempt_at,
                    letter.source_object,
                    letter.payload,
                ),
            )
            conn.execute(
                "UPDATE images SET state = ?, error_code = ?, error_message = ?,"
                " attempts = MAX(attempts, ?), next_attempt_at = NULL, updated_at = ?"
                " WHERE image_id = ? AND state IN (?, ?)",
                (
                    State.FAILED.value,
                    letter.error_code,
                    letter.error_message,
                    letter.attempts,
                    letter.last_attempt_at,
                    letter.image_id,
                    State.QUEUED.value,
                    State.PROCESSING.value,
                ),
            )
        return cursor.rowcount == 1

    def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._db.conn.execute(
            "SELECT * FROM failed_tasks ORDER BY last_attempt_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [
            DeadLetter(
                image_id=row["image_id"],
                task_name=row["task_name"],
                error_code=row["error_code"],
                error_message=row["error_message"],
                attempts=row["attempts"],
                first_attempt_at=row["first_attempt_at"],
                last_attempt_at=row["last_attempt_at"],
                source_object=row["source_object"],
                payload=row["payload"],
            )
            for row in rows
        ]

    def remove_dead_letters(self, task_names: Iterable[str]) -> int:
        names = list(task_names)
        with self._db.transaction() as conn:
            removed = 0
            for name in names:
                removed += conn.execute(
                    "DELETE FROM failed_tasks WHERE task_name = ?", (name,)
                ).rowcount
        return removed

    def remove_image_letters(self, image_id: str) -> int:
        with self._db.transaction() as conn:
            return int(
                conn.execute("DELETE FROM failed_tasks WHERE image_id = ?", (image_id,)).rowcount
            )
