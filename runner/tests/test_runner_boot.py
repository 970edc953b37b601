"""The entry point's first step: systemd's watchdog stretched for the start, before any import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stack_runner import sd_notify


def sent(env: dict[str, str]) -> list[str]:
    got: list[str] = []
    sd_notify.stretch_for_start(env, lambda message: got.append(message) or True)
    return got


@pytest.mark.parametrize(("env", "expected"), [
    ({"WATCHDOG_USEC": "3000000"}, ["WATCHDOG_USEC=60000000"]),
    ({"WATCHDOG_USEC": "3000000", "STACK_START_SECONDS": "7"}, ["WATCHDOG_USEC=7000000"]),
    ({"WATCHDOG_USEC": "9000000", "STACK_START_SECONDS": "7"}, ["WATCHDOG_USEC=9000000"]),  # never shorter
    ({"WATCHDOG_USEC": "3000000", "STACK_START_SECONDS": "x"}, ["WATCHDOG_USEC=60000000"]),
    ({"WATCHDOG_USEC": "3000000", "STACK_START_SECONDS": "0"}, ["WATCHDOG_USEC=60000000"]),
    ({}, []),
    ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, []),  # another process's watchdog
])
def test_the_start_is_stretched_only_with_a_watchdog_for_this_process(env: dict[str, str], expected: list[str]) -> None:
    assert sent(env) == expected


def test_the_entry_point_loads_nothing_heavy_before_the_stretch() -> None:
    """What `stack-runner` has imported when it sends the stretch: not the server, the metrics,
    the app's loader or the package metadata (each slow on a starved host)."""
    probe = ("import sys\n"
             "from stack_runner import boot\n"
             "heavy = [m for m in ('waitress', 'prometheus_client', 'stack_runner.serve', 'stack_runner.loader',"
             " 'importlib.metadata', 'http.client', 'logging') if m in sys.modules]\n"
             "print(','.join(heavy))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", result.stdout
