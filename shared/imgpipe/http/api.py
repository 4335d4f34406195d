"""The API routes (PRODUCT.md's HTTP table): parse, call the pipeline, answer JSON. Keys are
checked before anything else; nothing else happens here."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable

from flask import Blueprint, Response, request

from imgpipe import metrics, pipeline
from imgpipe.auth import ApiAuth, lower_keys
from imgpipe.errors import FileTooLarge, InvalidRequest, NotFound
from imgpipe.http.common import (
    image_id_arg,
    json_body,
    json_response,
    optional_bool,
    optional_str,
)
from imgpipe.model import VISIBLE_STATES, State
from imgpipe.settings import CACHE_CONTROL

MAX_PAGE = 200


def page_args() -> tuple[int, str | None]:
    raw = request.args.get("limit") or "50"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be 1..{MAX_PAGE}")
    cursor = request.args.get("cursor") or None
    return int(raw), cursor


def api_blueprint(
    get_svc: Callable[[], pipeline.Services],
    auth: ApiAuth,
    *,
    serve_files: bool,
    process_counters: bool = True,
) -> Blueprint:
    bp = Blueprint("api", __name__)

    @bp.before_request
    def _check_key() -> None:
        if request.path.startswith("/files/"):
            return  # renditions are public, immutable content (as in a public bucket)
        auth.check(lower_keys(request.headers.items()))

    @bp.post("/upload")
    def upload() -> Response:
        svc = get_svc()
        file = request.files.get("file")
        if file is None:
            raise InvalidRequest("multipart field 'file' is required")
        data = file.stream.read(svc.settings.max_upload_bytes + 1)
        if len(data) > svc.settings.max_upload_bytes:
            raise FileTooLarge(
                f"file is larger than {svc.settings.max_upload_bytes} bytes; "
                "use POST /uploads/signed-url"
            )
        job_id = pipeline.check_job_id(request.form.get("job_id") or None)
        if job_id is not None and svc.state.get_job(job_id) is None:
            raise NotFound(f"no job {job_id}")
        record, queued = pipeline.submit(
            svc,
            data,
            {"upload": file.filename or "upload"},
            priority=request.form.get("priority") or "high",
            job_id=job_id,
        )
        if queued:
            body = {
                "image_id": record.image_id,
                "status": "queued",
                "status_url": f"/images/{record.image_id}",
            }
            return json_response(body, 202)
        return json_response(pipeline.image_view(svc, record.image_id), 200)

    @bp.post("/uploads/signed-url")
    def signed_url() -> Response:
        raise InvalidRequest("signed upload URLs exist on the gcp backend only")

    @bp.post("/enqueue")
    def enqueue() -> Response:
        svc = get_svc()
        payload = json_body()
        ids = payload.get("image_ids")
        prefix = optional_str(payload, "prefix")
        priority = optional_str(payload, "priority")
        job_name = optional_str(payload, "job_name")
        reprocess = optional_bool(payload, "reprocess")
        everything = optional_bool(payload, "all")
        # Checked before anything is written: a refused request changes nothing.
        schedule_time = pipeline.check_schedule(svc, payload.get("schedule_time"))
        pipeline.queue_for(svc, priority)
        if ids is not None and prefix is not None:
            raise InvalidRequest("give 'image_ids' or 'prefix', not both")
        if ids is not None:
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise InvalidRequest("'image_ids' must be a list of strings")
            job_id, total = pipeline.enqueue_ids(
                svc,
                ids,
                priority=priority,
                schedule_time=schedule_time,
                job_name=job_name,
                reprocess=reprocess,
            )
        elif prefix is not None or everything:
            job_id = pipeline.enqueue_prefix(
                svc,
                prefix or "",
                everything=everything,
                priority=priority,
                schedule_time=schedule_time,
                job_name=job_name,
            )
            # The listing is walked by tasks: the count grows on GET /jobs/{id}.
            body = {"job_id": job_id, "total_tasks": None, "status_url": f"/jobs/{job_id}"}
            return json_response(body, 202)
        elif reprocess:
            job_id, total = pipeline.enqueue_stale(svc, priority=priority, job_name=job_name)
        else:
            raise InvalidRequest("give 'image_ids', 'prefix' or 'reprocess': true")
        return json_response({"job_id": job_id, "total_tasks": total}, 202)

    @bp.get("/jobs/<job_id>")
    def job(job_id: str) -> Response:
        try:
            pipeline.check_job_id(job_id)
        except InvalidRequest:
            raise NotFound("no such job") from None
        svc = get_svc()
        record = svc.state.get_job(job_id, now=svc.clock.now())
        if record is None:
            raise NotFound(f"no job {job_id}")
        return json_response(record.to_json(svc.clock.now()))

    @bp.get("/jobs")
    def jobs() -> Response:
        svc = get_svc()
        limit, cursor = page_args()
        records, next_cursor = svc.state.page_jobs(limit=limit, cursor=cursor)
        now = svc.clock.now()
        return json_response(
            {"jobs": [r.to_json(now) for r in records], "next_cursor": next_cursor}
        )

    @bp.get("/images")
    def images() -> Response:
        svc = get_svc()
        limit, cursor = page_args()
        state = request.args.get("state") or None
        if state is not None and state not in {s.value for s in VISIBLE_STATES}:
            raise InvalidRequest("'state' must be queued, processing, done or failed")
        views, next_cursor = pipeline.list_images(
            svc, state=None if state is None else State(state), limit=limit, cursor=cursor
        )
        return json_response({"images": views, "next_cursor": next_cursor})

    @bp.get("/images/<image_id>/best")
    def best(image_id: str) -> Response:
        raw = request.args.get("w") or "0"
        if not raw.isdigit() or int(raw) > 100_000:
            raise InvalidRequest("'w' must be a width in pixels")
        accept = request.headers.get("Accept", "")
        url = pipeline.best_rendition(get_svc(), image_id_arg(image_id), int(raw), accept)
        response = Response(status=302)
        response.headers["Location"] = url
        response.headers["Vary"] = "Accept"
        # Short: a reprocess points the image at new files; the files themselves are immutable.
        response.headers["Cache-Control"] = "private, max-age=60"
        return response

    @bp.patch("/images/<image_id>")
    def patch_image(image_id: str) -> Response:
        payload = json_body()
        if set(payload) != {"focus"}:
            raise InvalidRequest('PATCH takes {"focus": [x, y]} or {"focus": null}')
        focus = pipeline.check_focus(payload["focus"])
        record = pipeline.set_focus(get_svc(), image_id_arg(image_id), focus)
        body = {"image_id": record.image_id, "focus": record.focus, "status": record.state.value}
        return json_response(body, 202)

    @bp.post("/queues/<name>/<action>")
    def queue_action(name: str, action: str) -> Response:
        svc = get_svc()
        names = {svc.settings.queue_high, svc.settings.queue}
        if name not in names or action not in ("pause", "resume"):
            raise NotFound("no such queue action")
        if action == "pause":
            svc.queue.pause(name)
        else:
            svc.queue.resume(name)
        state = next((q.state for q in svc.queue.stats() if q.name == name), None)
        return json_response({"name": name, "state": state})

    @bp.get("/metrics")
    def metrics_text() -> Response:
        body = metrics.exposition(get_svc(), counters=process_counters)
        return Response(body, mimetype=None, content_type=metrics.CONTENT_TYPE)

    @bp.get("/images/<image_id>")
    def image(image_id: str) -> Response:
        return json_response(pipeline.image_view(get_svc(), image_id_arg(image_id)))

    @bp.delete("/images/<image_id>")
    def delete_image(image_id: str) -> Response:
        pipeline.delete_image(get_svc(), image_id_arg(image_id))  # idempotent
        return json_response({"image_id": image_id, "deleted": True})

    @bp.get("/status")
    def status() -> Response:
        return json_response(pipeline.status_view(get_svc()))

    @bp.get("/failed")
    def failed() -> Response:
        letters = get_svc().state.list_dead_letters(limit=1000)
        return json_response({"failed": [d.to_json() for d in letters]})

    @bp.post("/failed/retry")
    def failed_retry() -> Response:
        payload = json_body()
        ids = payload.get("image_ids")
        if ids is not None and (
            not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)
        ):
            raise InvalidRequest("'image_ids' must be a list of strings")
        job_id, total = pipeline.retry_failed(get_svc(), ids)
        return json_response({"job_id": job_id, "total_tasks": total}, 202)

    @bp.post("/sweep")
    def sweep() -> Response:
        return json_response(pipeline.sweep(get_svc()))

    if serve_files:

        @bp.get("/files/<path:path>")
        def files(path: str) -> Response:
            svc = get_svc()
            if "\x00" in path:
                raise InvalidRequest("bad file path")
            # Renditions only: originals live in a store of their own, never served here.
            if not path.startswith(svc.outputs_prefix) or path.endswith("/"):
                raise NotFound("no such file")
            data = svc.blobs.get(path)
            mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
            response = Response(data, mimetype=mime)
            response.headers["Cache-Control"] = (
                "no-cache" if path.endswith("metadata.json") else CACHE_CONTROL
            )
            return response

    return bp
