"""Settings read once from the environment into one frozen object that is passed explicitly.
Nothing else in imgpipe reads `os.environ`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from imgpipe.cpu import available_cores
from imgpipe.errors import ConfigError
from imgpipe.renditions import RenditionSpec, parse_specs

DEFAULT_RENDITIONS = "320,640,1280,1920,3840"
JPEG_QUALITY = 82
WEBP_QUALITY = 80
WEBP_METHOD = 4
OUTPUT_FORMATS = ("jpeg", "webp")
KNOWN_FORMATS = ("jpeg", "webp", "avif")
AVIF_QUALITY = 60  # libavif's 0..100 scale
AVIF_SPEED = 6  # libavif's 0 (slowest, smallest) .. 10
CROPS = ("attention", "centre")
CACHE_CONTROL = "public, max-age=31536000, immutable"
GOOGLE_OIDC_CERTS_URL = "https://www.googleapis.com/oauth2/v3/certs"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Settings:
    backend: str = "local"
    data_dir: Path = Path(".imgpipe")
    api_token: str | None = None
    task_auth: str = "secret"
    task_secret: str | None = None
    oidc_audience: str | None = None
    tasks_service_account: str | None = None
    project: str | None = None
    location: str = "us-central1"
    bucket: str | None = None
    upload_bucket: str | None = None
    originals_bucket: str | None = None  # private: originals keep their EXIF and GPS
    firestore_database: str = "(default)"  # one per environment (`setup.sh --env NAME`)
    queue: str = "normal"
    queue_high: str = "high"
    worker_url: str | None = None
    failure_url: str | None = None
    max_attempts: int = 5
    renditions: tuple[RenditionSpec, ...] = field(
        default_factory=lambda: parse_specs(DEFAULT_RENDITIONS)
    )
    formats: tuple[str, ...] = OUTPUT_FORMATS
    avif_quality: int = AVIF_QUALITY
    avif_speed: int = AVIF_SPEED
    crop: str = "attention"  # cover crops without a focal point: attention | centre
    # Threads one image's encodes may use. All cores: when fewer images than cores are left,
    # the last ones still use every core; while all are busy the extra threads just wait.
    render_threads: int = field(default_factory=available_cores)
    max_pixels: int = 100_000_000
    max_upload_bytes: int = 30 * 1024 * 1024
    # Objects in the uploads bucket and local files skip the request cap (that is what signed
    # upload URLs are for) but still get a bound before their bytes are read.
    max_object_bytes: int = 512 * 1024 * 1024
    cloud_tasks_emulator_host: str | None = None
    oidc_certs_url: str = GOOGLE_OIDC_CERTS_URL  # JWKS; tests serve their own
    url_mode: str = "public"  # rendition URLs on GCS: "public" | "signed" (V4)
    shutdown_grace: float = 20.0  # SIGTERM: seconds for tasks in flight to finish
    webhook_url: str | None = None  # events POSTed here (CloudEvents, signed)
    webhook_secret: str | None = None
    events_topic: str | None = None  # Pub/Sub topic (GCP): projects/P/topics/T or T

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        settings = cls(
            backend=reader.get("IMGPIPE_BACKEND", "local", _choice("local", "gcp")),
            data_dir=Path(reader.get("IMGPIPE_DATA_DIR", ".imgpipe", str)),
            api_token=reader.optional("IMGPIPE_API_TOKEN"),
            task_auth=reader.get("IMGPIPE_TASK_AUTH", "secret", _choice("secret", "oidc")),
            task_secret=reader.optional("IMGPIPE_TASK_SECRET"),
            oidc_audience=reader.optional("IMGPIPE_OIDC_AUDIENCE"),
            tasks_service_account=reader.optional("IMGPIPE_TASKS_SERVICE_ACCOUNT"),
            project=reader.optional("GOOGLE_CLOUD_PROJECT"),
            location=reader.get("IMGPIPE_LOCATION", "us-central1", str),
            bucket=reader.optional("IMGPIPE_BUCKET"),
            upload_bucket=reader.optional("IMGPIPE_UPLOAD_BUCKET"),
            originals_bucket=reader.optional("IMGPIPE_ORIGINALS_BUCKET"),
            firestore_database=reader.get(
                "IMGPIPE_FIRESTORE_DATABASE", "(default)", _firestore_database
            ),
            queue=reader.get("IMGPIPE_QUEUE", "normal", str),
            queue_high=reader.get("IMGPIPE_QUEUE_HIGH", "high", str),
            worker_url=reader.optional("IMGPIPE_WORKER_URL"),
            failure_url=reader.optional("IMGPIPE_FAILURE_URL"),
            max_attempts=reader.get("IMGPIPE_MAX_ATTEMPTS", 5, _int_range(1, 100)),
            renditions=reader.get(
                "IMGPIPE_RENDITIONS", parse_specs(DEFAULT_RENDITIONS), parse_specs
            ),
            formats=reader.get("IMGPIPE_FORMATS", OUTPUT_FORMATS, _formats),
            avif_quality=reader.get("IMGPIPE_AVIF_QUALITY", AVIF_QUALITY, _int_range(0, 100)),
            avif_speed=reader.get("IMGPIPE_AVIF_SPEED", AVIF_SPEED, _int_range(0, 10)),
            crop=reader.get("IMGPIPE_CROP", "attention", _choice(*CROPS, "center")).replace(
                "center", "centre"
            ),
            render_threads=reader.get(
                "IMGPIPE_RENDER_THREADS", min(available_cores(), 16), _int_range(1, 64)
            ),
            max_pixels=reader.get("IMGPIPE_MAX_PIXELS", 100_000_000, _int_range(1, 2**40)),
            max_upload_bytes=reader.get(
                "IMGPIPE_MAX_UPLOAD_BYTES", 30 * 1024 * 1024, _int_range(1, 2**40)
            ),
            max_object_bytes=reader.get(
                "IMGPIPE_MAX_OBJECT_BYTES", 512 * 1024 * 1024, _int_range(1, 2**40)
            ),
            cloud_tasks_emulator_host=reader.optional("CLOUD_TASKS_EMULATOR_HOST"),
            oidc_certs_url=reader.get("IMGPIPE_OIDC_CERTS_URL", GOOGLE_OIDC_CERTS_URL, str),
            url_mode=reader.get("IMGPIPE_URL_MODE", "public", _choice("public", "signed")),
            shutdown_grace=reader.get("IMGPIPE_SHUTDOWN_GRACE", 20.0, _seconds(0.0, 3600.0)),
            webhook_url=reader.get("IMGPIPE_WEBHOOK_URL", None, _http_url),
            webhook_secret=reader.optional("IMGPIPE_WEBHOOK_SECRET"),
            events_topic=reader.optional("IMGPIPE_EVENTS_TOPIC"),
        )
        if settings.webhook_url and not settings.webhook_secret:
            raise ConfigError(
                "IMGPIPE_WEBHOOK_URL needs IMGPIPE_WEBHOOK_SECRET (it signs each event)"
            )
        if settings.backend == "gcp":
            _require_gcp(settings)
        return settings

    @property
    def fingerprint(self) -> str:
        """Identifies everything that changes the outputs; stored with each image so that
        `reprocess` can find images rendered under another configuration."""
        config: dict[str, object] = {
            "renditions": [spec.text for spec in self.renditions],
            "formats": list(self.formats),
            "jpeg": JPEG_QUALITY,
            "webp": [WEBP_QUALITY, WEBP_METHOD],
            "palette": 1,
            # The core's own output version: bumped when the same settings give other bytes
            # (2: the JPEG encoder's capped tables and scan script), so re-renders get new
            # immutable paths instead of colliding with the old files.
            "core": 2,
            "crop": self.crop,
        }
        if "avif" in self.formats:
            config["avif"] = [self.avif_quality, self.avif_speed]
        blob = json.dumps(config, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def get(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is invalid: {exc}") from None


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return raw

    return parse


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw.replace("_", ""))
        if not low <= value <= high:
            raise ValueError(f"expected an integer in {low}..{high}")
        return value

    return parse


def _formats(raw: str) -> tuple[str, ...]:
    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    unknown = [n for n in names if n not in KNOWN_FORMATS]
    if unknown or not names:
        raise ValueError(f"expected a comma-separated list of {', '.join(KNOWN_FORMATS)}")
    return tuple(dict.fromkeys(names))


def _firestore_database(raw: str) -> str:
    if raw != "(default)" and not re.fullmatch(r"[a-z][a-z0-9-]{2,61}[a-z0-9]", raw):
        raise ValueError("expected (default) or a database id: a-z, 0-9, '-', 4-63 long")
    return raw


def _http_url(raw: str) -> str | None:
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s):// URL")
    return raw


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:  # also refuses nan
            raise ValueError(f"expected seconds in {low:g}..{high:g}")
        return value

    return parse


def _require_gcp(settings: Settings) -> None:
    required = {
        "GOOGLE_CLOUD_PROJECT": settings.project,
        "IMGPIPE_BUCKET": settings.bucket,
        "IMGPIPE_ORIGINALS_BUCKET": settings.originals_bucket,
        "IMGPIPE_API_TOKEN": settings.api_token,
        "IMGPIPE_WORKER_URL": settings.worker_url,
        "IMGPIPE_FAILURE_URL": settings.failure_url,
    }
    missing = [name for name, value in required.items() if not value]
    if settings.originals_bucket and settings.originals_bucket == settings.bucket:
        raise ConfigError(
            "IMGPIPE_ORIGINALS_BUCKET must not be IMGPIPE_BUCKET: originals stay private"
        )
    if settings.task_auth == "secret" and not settings.task_secret:
        missing.append("IMGPIPE_TASK_SECRET")
    if settings.task_auth == "oidc" and not settings.tasks_service_account:
        missing.append("IMGPIPE_TASKS_SERVICE_ACCOUNT")
    if missing:
        raise ConfigError(f"IMGPIPE_BACKEND=gcp needs {', '.join(missing)}")
