"""`webapp-serve`: run the app under Waitress, configured by the environment."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import waitress

from webapp import logs
from webapp.app import create_app
from webapp.config import Config


def _stop(signum: int, _frame: FrameType | None) -> None:
    logging.getLogger("webapp").info("stopping", extra={"signal": signal.Signals(signum).name})
    sys.exit(0)  # unwinds out of waitress.serve() in the main thread


def main() -> None:
    """Load the Config, log JSON to stdout, serve until SIGTERM or SIGINT (exit 0)."""
    logs.configure()
    log = logging.getLogger("webapp")
    try:
        config = Config.from_env()
    except ValueError as err:
        log.error("bad configuration: %s", err)
        raise SystemExit(2) from None
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("starting", extra={"bind": config.bind, "port": config.port, "threads": config.threads,
                                "version": config.version, "release": config.release})
    # Waitress would drop X-Forwarded-For from every peer (it trusts at most one proxy
    # address); the app itself believes it only from config.trusted_proxies (logs.client_addr).
    waitress.serve(create_app(config), host=config.bind, port=config.port,
                   threads=config.threads, ident=None, clear_untrusted_proxy_headers=False)


if __name__ == "__main__":
    main()
