#!/usr/bin/env python3
"""A bounded HTTP load generator for the lab.

Drives steady GET requests at one URL from a few threads, each with its own keep-alive
connection, until a time limit or a request limit is reached, whichever comes first. Every
request is recorded (start time, latency, HTTP status or error), so a caller can count
failures and read latency percentiles. Used by bench/bench.py and by the lab tests.

As browsers and HTTP libraries do (RFC 9112, 9.3.1), a GET sent on a reused keep-alive
connection that the server had already closed or reset, before any byte of an answer came
back, is sent once more on a new connection; the sample counts it (`retried`). A request on a
new connection that fails, or an answer cut after it began, is a failure.

Safety: the target must be a loopback address or lie in one of the allowed networks
(by default the lab's network, LAB_NET/24); anything else is refused before a request is
sent.

    python bench/loadgen.py http://10.77.0.11/ --seconds 10
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
import os
import socket
import ssl
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# How a kept-alive connection the server closed or reset shows when the next request is sent on it.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
DEFAULT_MAX_SECONDS = 600.0
DEFAULT_MAX_REQUESTS = 200_000


@dataclass(frozen=True)
class Sample:
    """One request: when it started (monotonic seconds), how long it took, what came back."""

    start: float
    latency: float
    status: int  # 0 when the request failed without an HTTP answer
    error: str = ""
    retried: bool = False  # sent again on a new connection: the reused one was closed before any answer

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400 and not self.error


@dataclass
class Result:
    """All samples of a run and the figures an operator asks for."""

    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]

    def percentile(self, q: float) -> float:
        """Latency percentile in seconds (q in 0..100), nearest-rank."""
        latencies = sorted(s.latency for s in self.samples)
        if not latencies:
            return float("nan")
        rank = max(1, min(len(latencies), math.ceil(q / 100 * len(latencies))))
        return latencies[rank - 1]

    def summary(self) -> dict[str, object]:
        errors: dict[str, int] = {}
        for s in self.failures:
            key = s.error or f"HTTP {s.status}"
            errors[key] = errors.get(key, 0) + 1
        return {
            "requests": self.requests,
            "failed": len(self.failures),
            "wall_s": round(self.wall, 3),
            "rps": round(self.requests / self.wall, 1) if self.wall else 0.0,
            "p50_ms": round(self.percentile(50) * 1000, 2),
            "p99_ms": round(self.percentile(99) * 1000, 2),
            "median_ms": round(statistics.median(s.latency for s in self.samples) * 1000, 2)
            if self.samples
            else float("nan"),
            "errors": errors,
            "retried": sum(s.retried for s in self.samples),
        }


def lab_networks() -> list[ipaddress.IPv4Network]:
    """The networks load may go to: the lab's /24 (LAB_NET, default 10.77.0)."""
    net = os.environ.get("LAB_NET", "10.77.0")
    return [ipaddress.ip_network(f"{net}.0/24")]


def check_target(url: str, allowed: list[ipaddress.IPv4Network]) -> None:
    """Refuse any URL whose host is not loopback nor inside an allowed network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    for info in socket.getaddrinfo(parts.hostname, None, proto=socket.IPPROTO_TCP):
        address = ipaddress.ip_address(info[4][0])
        if not (address.is_loopback or any(address in net for net in allowed)):
            raise ValueError(
                f"{url!r} resolves to {address}, which is neither loopback nor in "
                f"{', '.join(map(str, allowed))}: load goes only to the lab"
            )


class Load:
    """Steady load on one URL from `workers` threads, bounded in time and count.

    Use as a context manager around the thing to measure, or call start() and stop().
    `interval` paces each worker (seconds between request starts; 0 = back to back).
    """

    def __init__(
        self,
        url: str,
        *,
        workers: int = 4,
        interval: float = 0.0,
        timeout: float = 5.0,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        allowed: list[ipaddress.IPv4Network] | None = None,
        verify_tls: bool = False,
    ) -> None:
        check_target(url, lab_networks() if allowed is None else allowed)
        if workers < 1 or max_seconds <= 0 or max_requests < 1:
            raise ValueError("workers, max_seconds and max_requests must be positive")
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._workers = workers
        self._interval = interval
        self._timeout = timeout
        self._max_seconds = max_seconds
        self._max_requests = max_requests
        self._context = ssl.create_default_context() if self._https else None
        if self._context is not None and not verify_tls:
            self._context.check_hostname = False
            self._context.verify_mode = ssl.CERT_NONE
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started = 0.0
        self._issued = 0
        self.result = Result()

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _take_slot(self) -> bool:
        with self._lock:
            if self._stop.is_set() or self._issued >= self._max_requests:
                return False
            if time.monotonic() - self._started >= self._max_seconds:
                return False
            self._issued += 1
            return True

    def _record(self, sample: Sample) -> None:
        with self._lock:
            self.result.samples.append(sample)

    def _worker(self) -> None:
        conn, reused = self._connect(), False
        try:
            while self._take_slot():
                begin, retried = time.monotonic(), False
                while True:
                    answered = False
                    try:
                        conn.request("GET", self._path, headers={"User-Agent": "webapp-loadgen"})
                        response = conn.getresponse()
                        answered = True
                        response.read()
                        sample = Sample(begin, time.monotonic() - begin, response.status, retried=retried)
                        reused = not response.will_close
                        if response.will_close:
                            conn.close()
                            conn = self._connect()
                    except (OSError, http.client.HTTPException) as exc:
                        conn.close()
                        conn = self._connect()
                        if reused and not answered and not retried and isinstance(exc, STALE):
                            reused, retried = False, True
                            continue  # the kept-alive connection was gone before it answered: once more, anew
                        sample = Sample(begin, time.monotonic() - begin, 0, type(exc).__name__ + f": {exc}", retried)
                        reused = False
                    break
                self._record(sample)
                if self._interval:
                    self._stop.wait(max(0.0, self._interval - (time.monotonic() - begin)))
        finally:
            conn.close()

    def start(self) -> Load:
        self._started = time.monotonic()
        for n in range(self._workers):
            thread = threading.Thread(target=self._worker, name=f"load-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> Result:
        self._stop.set()
        for thread in self._threads:
            thread.join(self._timeout + 5)
        self.result.wall = time.monotonic() - self._started
        with self._lock:
            self.result.samples.sort(key=lambda s: s.start)
        return self.result

    def wait(self) -> Result:
        """Run until a bound is reached (no early stop)."""
        for thread in self._threads:
            thread.join()
        return self.stop()

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=10.0, help="time bound (default 10)")
    parser.add_argument("--max-requests", type=int, default=DEFAULT_MAX_REQUESTS)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between a worker's requests")
    args = parser.parse_args(argv)
    try:
        load = Load(
            args.url,
            workers=args.workers,
            interval=args.interval,
            max_seconds=args.seconds,
            max_requests=args.max_requests,
        )
    except ValueError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    result = load.start().wait()
    print(json.dumps(result.summary(), indent=2))
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
