"""`webapp-healthcheck URL`: exit 0 for a 1xx-3xx answer, 1 for 4xx/5xx or no answer.

Every check appends "<UTC timestamp> <code> <url>" to the log file (code 000 when
there was no answer) and prints the same line.
"""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx is an answer in itself: do not follow it


def status_of(url: str, timeout: float) -> int:
    """The HTTP status the URL answers with, or 0 when it does not answer."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError, ValueError):
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--log-file", type=Path, default=Path("healthcheck.log"))
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    code = status_of(args.url, args.timeout)
    line = f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {code:03d} {args.url}"
    with args.log_file.open("a") as log:
        log.write(line + "\n")
    print(line)
    return 0 if 100 <= code < 400 else 1


if __name__ == "__main__":
    raise SystemExit(main())
