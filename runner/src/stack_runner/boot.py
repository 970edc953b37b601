"""The runner's entry point, `stack-runner`: the watchdog's start-up stretch first, then the rest.

Only the standard library's os and socket are loaded before the stretch (stack_runner.sd_notify):
the server, the metrics and the app are imported after it, inside stack_runner.serve.
"""

from __future__ import annotations

from stack_runner import sd_notify


def main() -> None:
    """Stretch systemd's watchdog for the start, then load and serve (stack_runner.serve.main)."""
    sd_notify.stretch_for_start()
    from stack_runner import serve  # noqa: PLC0415 - after the stretch, on purpose

    serve.main()


if __name__ == "__main__":
    main()
