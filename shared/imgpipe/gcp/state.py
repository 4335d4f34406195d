"""The state store on Firestore.

Layout (collection names under an optional prefix):
- `images/{image_id}`: one document per image, the fields of `ImageRecord`;
- `jobs/{job_id}` with a `tasks` subcollection: one document per task of the job, written
  once when queued and once when finished, so no document is written by every worker; job
  progress comes from count aggregations over the subcollection;
- `failed_tasks/{sha256(task name)}`: the dead letters.

Every transition is a transaction that re-reads the image and compares state and `match`
fields before writing (compare-and-set); Firestore retries contended transactions itself.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any, TypeVar, cast

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.transaction import Transaction, transactional

from imgpipe import cursor as cursors
from imgpipe.gcp._errors import translated
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

T = TypeVar("T")
_IMAGE_FIELDS = tuple(f.name for f in fields(ImageRecord))
_LETTER_FIELDS = tuple(f.name for f in fields(DeadLetter))
_BATCH = 400  # below Firestore's 500 writes per batch


def doc_id(key: str) -> str:
    """Document ids may not contain '/', so keys like object paths are hashed."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def _encode(record: ImageRecord) -> dict[str, Any]:
    data = {name: getattr(record, name) for name in _IMAGE_FIELDS}
    data["state"] = record.state.value
    return data


def _decode(data: Mapping[str, Any]) -> ImageRecord:
    values: dict[str, Any] = {name: data.get(name) for name in _IMAGE_FIELDS}
    values["state"] = State(values["state"])
    for name in ("generation", "attempts", "sweeps"):
        values[name] = int(values[name] or 0)
    return ImageRecord(**values)


def _letter(data: Mapping[str, Any]) -> DeadLetter:
    values: dict[str, Any] = {name: data.get(name) for name in _LETTER_FIELDS}
    return DeadLetter(**values)


class FirestoreStateStore:
    def __init__(self, client: firestore.Client, prefix: str = "") -> None:
        self._client = client
        self._images = client.collection(f"{prefix}images")
        self._jobs = client.collection(f"{prefix}jobs")
        self._letters = client.collection(f"{prefix}failed_tasks")

    def _in_transaction(self, body: Callable[[Transaction], T]) -> T:
        run = cast(Callable[[Transaction], T], transactional(body))
        return run(self._client.transaction())

    # -- images ----------------------------------------------------------------------------

    def get_image(self, image_id: str) -> ImageRecord | None:
        with translated(f"reading image {image_id}", "state store"):
            snap = self._images.document(image_id).get()
        return _decode(snap.to_dict() or {}) if snap.exists else None

    def insert_image(self, record: ImageRecord) -> tuple[ImageRecord, bool]:
        ref = self._images.document(record.image_id)
        with translated(f"inserting image {record.image_id}", "state store"):
            try:
                ref.create(_encode(record))
                return record, True
            except gexc.AlreadyExists:
                pass
            snap = ref.get()
        if not snap.exists:  # deleted between the two calls: try once more
            return self.insert_image(record)
        return _decode(snap.to_dict() or {}), False

    def transition(
        self,
        image_id: str,
        expect: Iterable[State],
        changes: Mapping[str, Any],
        *,
        match: Mapping[str, Any] | None = None,
    ) -> ImageRecord | None:
        match = dict(match or {})
        unknown = (set(changes) | set(match)) - set(_IMAGE_FIELDS)
        if unknown or "image_id" in changes:
            raise ValueError(f"cannot change {sorted(unknown | {'image_id'} & set(changes))}")
        states = {State(s) for s in expect}
        if "state" in changes:
            check_transition(states, State(changes["state"]))
        update = {k: (v.value if isinstance(v, State) else v) for k, v in changes.items()}
        ref = self._images.document(image_id)

        def body(tx: Transaction) -> ImageRecord | None:
            snap = ref.get(transaction=tx)
            if not snap.exists:
                return None
            current = _decode(snap.to_dict() or {})
            if current.state not in states:
                return None
            if any(getattr(current, name) != value for name, value in match.items()):
                return None
            tx.update(ref, update)
            return current.evolve(**{**changes, "state": State(update.get("state", current.state))})

        with translated(f"updating image {image_id}", "state store"):
            return self._in_transaction(body)

    def purge_image(self, image_id: str) -> bool:
        ref = self._images.document(image_id)

        def body(tx: Transaction) -> bool:
            snap = ref.get(transaction=tx)
            if snap.exists:
                tx.delete(ref)
            return bool(snap.exists)

        with translated(f"deleting image {image_id}", "state store"):
            return self._in_transaction(body)

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
        """Queries match the composite indexes in firestore.indexes.json: (state, started_at),
        (state, fingerprint), (state, updated_at); `cleanup_at` alone uses its single-field
        index. One inequality per query; a second one is applied here."""
        query: Any = self._images
        if cleanup_before is not None:
            query = query.where(filter=FieldFilter("cleanup_at", "<", cleanup_before))
            with translated("listing images", "state store"):
                snaps = query.order_by("cleanup_at").limit(limit).stream()
                return [_decode(snap.to_dict() or {}) for snap in snaps]
        if state is not None:
            query = query.where(filter=FieldFilter("state", "==", state.value))
        if updated_before is not None:
            query = query.where(filter=FieldFilter("updated_at", "<", updated_before))
            query = query.order_by("updated_at")
        elif started_before is not None:
            query = query.where(filter=FieldFilter("started_at", "<", started_before))
            query = query.order_by("started_at")
        elif not_fingerprint is not None:
            query = query.where(filter=FieldFilter("fingerprint", "!=", not_fingerprint))
            query = query.order_by("fingerprint")
        else:
            query = query.order_by("updated_at")
        with translated("listing images", "state store"):
            records = [_decode(snap.to_dict() or {}) for snap in query.limit(limit).stream()]
        if started_before is not None and not_fingerprint is not None:
            records = [r for r in records if r.fingerprint != not_fingerprint]
        if state is None:
            records = [r for r in records if r.state is not State.DELETED]
        return records

    def page_images(
        self, *, state: State | None, limit: int, cursor: str | None
    ) -> tuple[list[ImageRecord], str | None]:
        """Matches the index (state, created_at desc, image_id desc) of firestore.indexes.json."""
        states = [state.value] if state is not None else [s.value for s in VISIBLE_STATES]
        query: Any = self._images.where(filter=FieldFilter("state", "in", states))
        query = query.order_by("created_at", direction="DESCENDING")
        query = query.order_by("image_id", direction="DESCENDING")
        if cursor is not None:
            created, key = cursors.decode(cursor)
            query = query.start_after({"created_at": created, "image_id": key})
        with translated("listing images", "state store"):
            records = [_decode(snap.to_dict() or {}) for snap in query.limit(limit + 1).stream()]
        page = records[:limit]
        last = page[-1] if page else None
        more = len(records) > limit
        return page, cursors.encode(last.created_at, last.image_id) if more and last else None

    def count_done_since(self, since: float) -> int:
        query = self._images.where(filter=FieldFilter("state", "==", State.DONE.value))
        query = query.where(filter=FieldFilter("updated_at", ">=", since))
        with translated("counting images", "state store"):
            return _count(query)

    def count_dead_letters(self) -> int:
        with translated("counting dead letters", "state store"):
            return _count(self._letters)

    def page_jobs(self, *, limit: int, cursor: str | None) -> tuple[list[JobRecord], str | None]:
        query: Any = self._jobs.order_by("created_at", direction="DESCENDING")
        if cursor is not None:
            created, _ = cursors.decode(cursor)
            query = query.start_after({"created_at": created})
        with translated("listing jobs", "state store"):
            ids = [snap.id for snap in query.limit(limit + 1).stream()]
        jobs = [job for job_id in ids[:limit] if (job := self.get_job(job_id)) is not None]
        last = jobs[-1] if jobs else None
        more = len(ids) > limit
        return jobs, cursors.encode(last.created_at, last.job_id) if more and last else None

    def count_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with translated("counting images", "state store"):
            for state in VISIBLE_STATES:
                query = self._images.where(filter=FieldFilter("state", "==", state.value))
                counts[state.value] = _count(query)
        return counts

    # -- jobs ------------------------------------------------------------------------------

    def create_job(
        self, job_id: str, name: str | None, created_at: float, *, listing: bool = False
    ) -> None:
        doc = {"name": name, "created_at": created_at, "listing": listing}
        with (
            translated(f"creating job {job_id}", "state store"),
            contextlib.suppress(gexc.AlreadyExists),
        ):
            self._jobs.document(job_id).create(doc)

    def finish_listing(self, job_id: str) -> None:
        with translated(f"finishing the listing of job {job_id}", "state store"):
            self._jobs.document(job_id).update({"listing": False})

    def add_job_task(self, job_id: str, task_key: str, image_id: str | None) -> bool:
        ref = self._jobs.document(job_id).collection("tasks").document(doc_id(task_key))
        record = {"task_key": task_key, "image_id": image_id, "status": TaskStatus.PENDING.value}
        with translated(f"adding a task to job {job_id}", "state store"):
            try:
                ref.create(record)
            except gexc.AlreadyExists:
                return False
        return True

    def finish_job_task(
        self, job_id: str, task_key: str, status: TaskStatus, at: float | None = None
    ) -> bool:
        ref = self._jobs.document(job_id).collection("tasks").document(doc_id(task_key))

        def body(tx: Transaction) -> bool:
            snap = ref.get(transaction=tx)
            if not snap.exists or (snap.to_dict() or {}).get("status") != TaskStatus.PENDING:
                return False
            tx.update(ref, {"status": status.value, "finished_at": at})
            return True

        with translated(f"finishing a task of job {job_id}", "state store"):
            return self._in_transaction(body)

    def get_job(self, job_id: str, now: float | None = None) -> JobRecord | None:
        ref = self._jobs.document(job_id)
        with translated(f"reading job {job_id}", "state store"):
            snap = ref.get()
            if not snap.exists:
                return None
            tasks = ref.collection("tasks")
            counts = {
                status.value: _count(tasks.where(filter=FieldFilter("status", "==", status.value)))
                for status in TaskStatus
            }
            recent = 0
            if now is not None:
                since = FieldFilter("finished_at", ">=", now - RATE_WINDOW)
                recent = _count(tasks.where(filter=since))
        data = snap.to_dict() or {}
        return JobRecord(
            job_id=job_id,
            name=data.get("name"),
            created_at=float(data.get("created_at") or 0.0),
            total_tasks=sum(counts.values()),
            counts={k: v for k, v in counts.items() if v},
            listing=bool(data.get("listing")),
            recent=recent,
        )

    # -- dead letters ----------------------------------------------------------------------

    def record_dead_letter(self, letter: DeadLetter) -> bool:
        letter_ref = self._letters.document(doc_id(letter.task_name))
        image_ref = self._images.document(letter.image_id)

        def body(tx: Transaction) -> bool:
            # Firestore transactions read everything before they write.
            known = letter_ref.get(transaction=tx).exists
            image = image_ref.get(transaction=tx)
            if image.exists and letter.generation is not None:
                now = _decode(image.to_dict() or {})
                moved_on = now.generation != letter.generation or (
                    letter.started_at is not None and now.started_at != letter.started_at
                )
                if moved_on or now.state is State.DELETED:
                    return False
            if not known:
                tx.create(letter_ref, {name: getattr(letter, name) for name in _LETTER_FIELDS})
            if image.exists:
                current = _decode(image.to_dict() or {})
                if current.state in (State.QUEUED, State.PROCESSING):
                    tx.update(
                        image_ref,
                        {
                            "state": State.FAILED.value,
                            "error_code": letter.error_code,
                            "error_message": letter.error_message,
                            "attempts": max(current.attempts, letter.attempts),
                            "next_attempt_at": None,
                            "updated_at": letter.last_attempt_at,
                        },
                    )
            return not known

        with translated(f"recording a dead letter for {letter.image_id}", "state store"):
            return self._in_transaction(body)

    def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        query = self._letters.order_by("last_attempt_at", direction="DESCENDING").limit(limit)
        with translated("listing dead letters", "state store"):
            return [_letter(snap.to_dict() or {}) for snap in query.stream()]

    def remove_dead_letters(self, task_names: Iterable[str]) -> int:
        refs = [self._letters.document(doc_id(name)) for name in dict.fromkeys(task_names)]
        removed = 0
        with translated("removing dead letters", "state store"):
            for offset in range(0, len(refs), _BATCH):
                chunk = refs[offset : offset + _BATCH]
                removed += sum(1 for snap in self._client.get_all(chunk) if snap.exists)
                batch = self._client.batch()
                for ref in chunk:
                    batch.delete(ref)
                batch.commit()
        return removed

    def remove_image_letters(self, image_id: str) -> int:
        ids = [image_id]
        removed = 0
        with translated("removing dead letters", "state store"):
            for start in range(0, len(ids), 30):  # `in` takes at most 30 values
                chunk = ids[start : start + 30]
                query = self._letters.where(filter=FieldFilter("image_id", "in", chunk))
                refs = [snap.reference for snap in query.stream()]
                for offset in range(0, len(refs), _BATCH):
                    batch = self._client.batch()
                    for ref in refs[offset : offset + _BATCH]:
                        batch.delete(ref)
                    batch.commit()
                removed += len(refs)
        return removed


def _count(query: Any) -> int:
    result = query.count(alias="n").get()
    return int(result[0][0].value) if result and result[0] else 0
