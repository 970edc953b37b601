"""`webapp-healthcheck URL`: exit 0 for a 1xx-3xx answer, 1 for 4xx/5xx or no answer.

Redirects are not followed: a 3xx is an answer in itself. Only http and https URLs are
checked; any other scheme, and a URL with a control character (a newline could forge a
line of the log), is refused with a message on stderr. `--timeout` bounds the whole check
(name resolution, connection, the answer's status line and headers). Every check appends
"<UTC timestamp> <code> <url>" to the log file (code 000 when there was no answer, or the
URL was refused) and prints the same line on stdout; the URL is written with any password
it carries replaced by "***", and a refused URL's control characters escaped.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import re
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

NO_ANSWER = 0
SCHEMES = ("http", "https")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the 3xx code itself


def _control_characters(text: str) -> list[str]:
    return sorted({c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029"})


def redacted(url: str) -> str:
    """`url` as it may be logged: a password in it replaced by ***, control characters escaped.

    `redacted("https://ops:s3cret@lb/")` -> "https://ops:***@lb/"
    """
    shown = url
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is not None:
            userinfo, _, hostport = parts.netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            shown = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))
    except ValueError:
        # Not splittable as a URL: hide whatever stands between "//" and the last "@".
        shown = re.sub(r"(//[^/@]*:)[^/]*@", r"\1***@", url)
    return "".join(c.encode("unicode_escape").decode("ascii") if c in _control_characters(shown) else c
                   for c in shown)


def refusal(url: str) -> str | None:
    """Why `url` is not checked (a control character, a scheme other than http/https, no host), or None."""
    controls = _control_characters(url)
    if controls:
        named = ", ".join(c.encode("unicode_escape").decode("ascii") for c in controls)
        return f"the URL holds control characters ({named})"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as err:
        return f"not a URL ({err})"
    if parts.scheme.lower() not in SCHEMES:
        return f"scheme {parts.scheme + ':' if parts.scheme else '(none)'} refused: only http and https URLs are checked"
    if not parts.hostname:
        return "the URL names no host"
    return None


def _request(url: str) -> urllib.request.Request:
    """A GET of `url`; credentials in it (user:password@) go in a Basic Authorization header."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return urllib.request.Request(url)
    hostport = parts.netloc.rpartition("@")[2]
    credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=hostport)))
    request.add_unredirected_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode("ascii"))
    return request


def _get(url: str, timeout: float) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    try:
        with opener.open(_request(url), timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
        return NO_ANSWER


def status_of(url: str, timeout: float) -> int:
    """The HTTP status `url` answers a GET with within `timeout` seconds in all, or NO_ANSWER (0).

    Only http and https URLs are fetched (others: NO_ANSWER). Proxies from the environment
    are ignored: the check goes straight to the URL.
    """
    if refusal(url):
        return NO_ANSWER
    result: list[int] = []
    # The socket timeout bounds each step only (a slow resolver or a server dripping its
    # headers could take longer in all): the deadline is the thread's, which is left behind.
    worker = threading.Thread(target=lambda: result.append(_get(url, timeout)), daemon=True)
    worker.start()
    worker.join(timeout)
    return result[0] if result else NO_ANSWER


def _seconds(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must lie within (0, 3600] seconds, got {raw}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webapp-healthcheck",
        description="GET an http(s) URL without following redirects; exit 0 for 1xx-3xx, 1 otherwise.",
    )
    parser.add_argument("url")
    parser.add_argument("--log-file", type=Path, default=Path("health.log"),
                        help="file to append the result line to (default: %(default)s)")
    parser.add_argument("--timeout", type=_seconds, default=5.0,
                        help="seconds the whole check may take (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    refused = refusal(args.url)
    shown = redacted(args.url)
    if refused:
        print(f"webapp-healthcheck: {shown}: {refused}", file=sys.stderr)
    code = NO_ANSWER if refused else status_of(args.url, args.timeout)
    line = f"{datetime.now(UTC).isoformat(timespec='seconds')} {code:03d} {shown}"
    try:
        with args.log_file.open("a", encoding="utf-8") as log:
            log.write(line + "\n")
    except OSError as err:
        print(f"webapp-healthcheck: cannot append to {args.log_file}: {err}", file=sys.stderr)
    print(line)
    return 0 if 100 <= code < 400 else 1


if __name__ == "__main__":
    raise SystemExit(main())
