"""Callback for bench/bench.py --profile: each task's wall time, written as JSON lines.

Enabled by bench.py only (ANSIBLE_CALLBACK_PLUGINS + ANSIBLE_CALLBACKS_ENABLED), it appends
one line per task (play, task, its action, seconds from its start to the start of the next
task or the end of the run, the hosts it ran on and those it skipped) to the file named by
BENCH_TIMING_FILE. bench.py --floors builds its floor playbook from these lines.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_timing
type: aggregate
short_description: each task's wall time as JSON lines, for bench/bench.py --profile
description: Appends one JSON line per task to the file named by BENCH_TIMING_FILE.
requirements: [enabled by bench/bench.py]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("BENCH_TIMING_FILE", "")
        self._play = ""
        self._current: tuple[str, str, float] | None = None
        self._action = ""
        self._ran: list[str] = []
        self._skipped: list[str] = []
        self._start = time.monotonic()

    def _close(self) -> None:
        if self._current and self._path:
            play, task, began = self._current
            with open(self._path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"play": play, "task": task, "action": self._action,
                                      "s": round(time.monotonic() - began, 3),
                                      "ran": self._ran, "skipped": self._skipped}) + "\n")
        self._current = None
        self._action, self._ran, self._skipped = "", [], []

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._close()
        self._play = play.get_name()
        self._current = (self._play, "(play start)", time.monotonic())

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._close()
        self._current = (self._play, task.get_name(), time.monotonic())
        self._action = task.action

    def _host(self, result: Any, into: list[str]) -> None:
        name = result._host.get_name()
        if name not in into:
            into.append(name)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._host(result, self._ran)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._host(result, self._ran)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._host(result, self._skipped)

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._close()
        if self._path:
            with open(self._path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"play": "", "task": "(whole run)", "s": round(time.monotonic() - self._start, 3)}) + "\n")
