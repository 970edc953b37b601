"""`webapp-healthcheck URL`: exit 0 for a 1xx-3xx answer, 1 for 4xx/5xx or no answer.

Redirects are not followed: a 3xx is an answer in itself. Every check appends
"<UTC timestamp> <code> <url>" to the log file (code 000 when there was no
answer) and prints the same line on stdout.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

NO_ANSWER = 0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the 3xx code itself


def status_of(url: str, timeout: float) -> int:
    """The HTTP status `url` answers a GET with, or NO_ANSWER (0).

    Proxies from the environment are ignored: the check goes straight to the URL.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
        return NO_ANSWER


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webapp-healthcheck",
        description="GET a URL without following redirects; exit 0 for 1xx-3xx, 1 otherwise.",
    )
    parser.add_argument("url")
    parser.add_argument("--log-file", type=Path, default=Path("healthcheck.log"),
                        help="file to append the result line to (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for an answer (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code = status_of(args.url, args.timeout)
    line = f"{datetime.now(UTC).isoformat(timespec='seconds')} {code:03d} {args.url}"
    try:
        with args.log_file.open("a", encoding="utf-8") as log:
            log.write(line + "\n")
    except OSError as err:
        print(f"webapp-healthcheck: cannot append to {args.log_file}: {err}", file=sys.stderr)
    print(line)
    return 0 if 100 <= code < 400 else 1


if __name__ == "__main__":
    raise SystemExit(main())
