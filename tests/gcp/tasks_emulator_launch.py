"""Starts gcloud-tasks-emulator bound to 127.0.0.1 only (its own launcher binds every
interface). Run with the emulator's own virtualenv:

    .venv-tasks-emulator/bin/python tests/gcp/tasks_emulator_launch.py PORT MAX_RETRIES
"""

from __future__ import annotations

import logging
import sys
import time

import grpc
from gcloud_tasks_emulator import server as emu


def _run(self: emu.APIThread) -> None:
    self._httpd = grpc.server(emu.futures.ThreadPoolExecutor(max_workers=4))
    emu.add_CloudTasksServicer_to_server(emu.Greeter(self._state), self._httpd)
    self._httpd.add_insecure_port(f"127.0.0.1:{self._port}")
    self._httpd.start()
    while self._is_running.is_set():
        time.sleep(emu._LOOP_SLEEP_TIME)


def main() -> int:
    port, max_retries = int(sys.argv[1]), int(sys.argv[2])
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    emu.APIThread.run = _run
    server = emu.create_server("127.0.0.1", port, max_retries=max_retries)
    server._api._is_running.set()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
