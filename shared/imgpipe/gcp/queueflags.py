"""Prints the `gcloud tasks queues create|update NAME` flags for one of imgpipe's queues, from
queueconfig (the one source of truth), one flag a line, for scripts/setup.sh:

    python -m imgpipe.gcp.queueflags high [--max-attempts 5]
"""

from __future__ import annotations

import argparse
import sys

from imgpipe.queueconfig import DEFAULT_MAX_ATTEMPTS, default_queue_configs, to_gcloud_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imgpipe.gcp.queueflags")
    parser.add_argument("name")
    parser.add_argument("--max-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS)
    args = parser.parse_args(argv)
    (config,) = default_queue_configs(
        local=False, max_attempts=args.max_attempts, names=[args.name]
    )
    sys.stdout.write("\n".join(to_gcloud_args(config)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
