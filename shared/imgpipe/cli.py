"""The `imgpipe` command. Each subcommand parses its arguments, builds the runtime from
Settings and calls the pipeline; errors print PRODUCT.md's code and message."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from imgpipe import __version__
from imgpipe.errors import ConfigError, InvalidRequest, PipelineError
from imgpipe.settings import Settings


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2))


def cmd_process(settings: Settings, args: argparse.Namespace) -> int:
    from imgpipe.batch import run_batch  # noqa: PLC0415 (keeps `--help` fast)

    return run_batch(settings, args.paths, args.out, report=args.report, workers=args.workers)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from imgpipe.serve import serve  # noqa: PLC0415

    return serve(settings, host=args.host, port=args.port, no_auth=args.no_auth)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from imgpipe import pipeline  # noqa: PLC0415
    from imgpipe.wiring import services_for  # noqa: PLC0415

    del args
    _print_json(pipeline.status_view(services_for(settings)))
    return 0


def cmd_failed(settings: Settings, args: argparse.Namespace) -> int:
    from imgpipe import pipeline  # noqa: PLC0415
    from imgpipe.wiring import services_for  # noqa: PLC0415

    svc = services_for(settings)
    if args.action == "list":
        _print_json({"failed": [d.to_json() for d in svc.state.list_dead_letters(1000)]})
        return 0
    job_id, total = pipeline.retry_failed(svc, args.image_ids or None)
    _print_json({"job_id": job_id, "total_tasks": total})
    if settings.backend == "local":
        print("run `imgpipe serve` to process the re-enqueued tasks", file=sys.stderr)
    return 0


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from imgpipe import pipeline  # noqa: PLC0415
    from imgpipe.wiring import services_for  # noqa: PLC0415

    del args
    _print_json(pipeline.reconcile(services_for(settings)))
    return 0


def cmd_queue(settings: Settings, args: argparse.Namespace) -> int:
    from imgpipe.wiring import local_runtime  # noqa: PLC0415

    if settings.backend != "local":
        raise InvalidRequest("on gcp, manage queues with scripts/setup.sh or gcloud tasks")
    queue = local_runtime(settings).queue
    if args.action == "list":
        _print_json([_stats(s) for s in queue.stats()])
        return 0
    if args.name is None:
        raise InvalidRequest(f"queue {args.action} needs a queue name")
    if args.action == "describe":
        info = queue.get_queue(args.name)
        _print_json(
            {
                "state": info.state,
                **info.config.to_dict(),
                # After 429/503 answers: the share of the rate in use, and a Retry-After hold
                # (epoch seconds, like every time imgpipe prints).
                "rate_factor": info.slowdown,
                "held_until": info.held_until,
            }
        )
    elif args.action == "update":
        changes = {k: v for k, v in vars(args).items() if k in _UPDATABLE and v is not None}
        if not changes:
            raise InvalidRequest("queue update needs at least one --setting")
        _print_json(queue.update_queue(args.name, **changes).to_dict())
    elif args.action == "pause":
        queue.pause(args.name)
    elif args.action == "resume":
        queue.resume(args.name)
    elif args.action == "purge":
        print(f"purged {queue.purge(args.name)} tasks")
    return 0


def _stats(stats: Any) -> dict[str, Any]:
    return {
        "name": stats.name,
        "state": stats.state,
        "depth": stats.depth,
        "in_flight": stats.in_flight,
    }


_UPDATABLE = {
    "max_dispatches_per_second": float,
    "max_burst_size": int,
    "max_concurrent_dispatches": int,
    "max_attempts": int,
    "max_retry_duration": float,
    "min_backoff": float,
    "max_backoff": float,
    "max_doublings": int,
    "dispatch_deadline": float,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgpipe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"imgpipe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("process", help="render every image under PATH... into --out")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--report", metavar="FILE", help="write a JSON report")
    p.add_argument(
        "--workers", type=int, default=None, help="images at once (default: one per core)"
    )
    p.set_defaults(func=cmd_process)

    p = sub.add_parser("serve", help="every endpoint on one port, with the local queue")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--no-auth", action="store_true", help="no API key (explicitly open)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("status", help="queues, image counts, recent failures")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("failed", help="dead letters")
    p.add_argument("action", choices=["list", "retry"])
    p.add_argument("image_ids", nargs="*", metavar="IMAGE_ID")
    p.set_defaults(func=cmd_failed)

    p = sub.add_parser(
        "reconcile", help="rebuild or repair the state store from the outputs' metadata.json"
    )
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("queue", help="inspect and change the local queues")
    p.add_argument("action", choices=["list", "describe", "update", "pause", "resume", "purge"])
    p.add_argument("name", nargs="?")
    for flag, kind in _UPDATABLE.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=kind)
    p.set_defaults(func=cmd_queue)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        code: int = args.func(settings, args)
    except ConfigError as exc:
        print(f"error: invalid_config: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except (ValueError, LookupError) as exc:
        print(f"error: invalid_request: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
