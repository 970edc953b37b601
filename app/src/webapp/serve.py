"""`webapp-serve`: run the app under Waitress, configured by the environment."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from waitress import serve

from webapp import logs
from webapp.app import create_app
from webapp.config import Config

log = logging.getLogger("webapp")


def _stop(signum: int, _frame: FrameType | None) -> None:
    log.info("stopping", extra={"signal": signal.Signals(signum).name})
    sys.exit(0)


def main() -> None:
    logs.configure()
    try:
        config = Config.from_env()
    except ValueError as err:
        log.error("bad configuration: %s", err)
        raise SystemExit(2) from None
    signal.signal(signal.SIGTERM, _stop)
    log.info("starting", extra={"bind": config.bind, "port": config.port, "version": config.version,
                                "release": config.release, "threads": config.threads})
    serve(create_app(config), host=config.bind, port=config.port, threads=config.threads, ident=None)


if __name__ == "__main__":
    main()
