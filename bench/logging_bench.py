#!/usr/bin/env python3
"""Benchmark the logging pipeline on the lab, and print one table row.

End-to-end latency: one marked request at a time through the load balancer; the time from
sending it until Loki answers a query with both its Nginx access line and its app line.
Reports the median and the 99th percentile (nearest rank) over the samples.

Sustained lines/s: one app host's instances get marked requests at a fixed rate, sent from
the load balancer host (the only host besides the monitoring hosts the firewall lets reach
them), for a fixed time; then Loki is asked how many of that step's app lines from that host
it holds. Every hop is counted for each step: the app's marked lines in the host's journal,
Fluent Bit's records in (its journald input) and out (its Loki output: sent, retried, dropped)
on that host, and Loki's count; a loss is named by the first hop whose count falls short.
Steps double the rate until a line is lost (or does not arrive within the catch-up time), or
until the host cannot take the rate (the app, not the shipper, is the limit). Reports the
highest rate with every line in Loki exactly once.

Traffic goes only to the lab's hosts (LAB_NET), bounded in time and count.

    ./stack lab                                  # a converged lab with Loki and Fluent Bit
    .venv/bin/python bench/logging_bench.py      # LAB_NAME / LAB_NET select the lab
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import ssl
import statistics
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import loadgen

ROOT = Path(__file__).resolve().parent.parent
# The lab tests' helpers: the inventory's values as Ansible templates them, the load
# balancer's URL, commands on a lab host.
sys.path.insert(0, str(ROOT / "molecule" / "default" / "tests"))
os.environ.setdefault("MOLECULE_PROJECT_DIRECTORY", str(ROOT))
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the venv's ansible
import conftest as lab  # noqa: E402


class Loki:
    """Loki's query API through its gateway, with the query credentials."""

    def __init__(self, url: str, auth: dict[str, str]) -> None:
        loadgen.check_target(url, loadgen.lab_networks())
        self.url = url
        self.auth = auth

    def _get(self, path: str, params: dict[str, object]) -> dict:
        request = urllib.request.Request(f"{self.url}{path}?{urllib.parse.urlencode(params)}", headers=self.auth)
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read())["data"]

    def lines(self, logql: str, since_ns: int) -> list[str]:
        data = self._get("/loki/api/v1/query_range", {"query": logql, "start": since_ns, "end": time.time_ns() + 10**9,
                                                       "limit": 5000, "direction": "forward"})
        return [v[1] for s in data["result"] for v in s["values"]]

    def count(self, logql: str, since_ns: int) -> int:
        """Lines matching a log query since since_ns (a metric query, so no line limit)."""
        window = max(1, math.ceil((time.time_ns() - since_ns) / 1e9) + 5)
        data = self._get("/loki/api/v1/query", {"query": f"sum(count_over_time({logql} [{window}s]))",
                                                 "time": time.time_ns() + 10**9})
        return int(float(data["result"][0]["value"][1])) if data["result"] else 0


def latency_samples(loki: Loki, lb_url: str, samples: int, timeout: float, poll: float) -> list[float]:
    """Seconds from each marked request until both its Nginx and its app line are in Loki."""
    loadgen.check_target(lb_url, loadgen.lab_networks())
    context = ssl._create_unverified_context() if lb_url.startswith("https:") else None  # noqa: S323 (lab's self-signed)
    found: list[float] = []
    for n in range(samples):
        marker = f"latency-{uuid.uuid4().hex}"
        since = time.time_ns() - 10**9
        request = urllib.request.Request(lb_url, headers={"X-Request-ID": marker, "User-Agent": marker})
        start = time.monotonic()
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:  # noqa: S310 (lab address, checked)
            resp.read()
        while True:
            services = {json.loads(line).get("service") for line in loki.lines(f'{{service=~"nginx|webapp"}} |= "{marker}"', since)}
            if {"nginx", "webapp"} <= services:
                found.append(time.monotonic() - start)
                break
            if time.monotonic() - start > timeout:
                raise SystemExit(f"bench: request {n} ({marker}) not in Loki after {timeout:.0f} s (found {services})")
            time.sleep(poll)
    return found


# Runs on the load balancer host: GET each app instance in turn at `rate` requests/s overall
# for `seconds`, each request marked <prefix>-<n>; prints how many were sent and answered.
_GENERATOR = r"""
import http.client, json, sys, threading, time
targets, prefix, rate, seconds = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
total = int(rate * seconds)
lock = threading.Lock()
state = {"next": 0, "ok": 0, "failed": 0}
start = time.monotonic() + 0.2
def worker():
    conns = {}
    while True:
        with lock:
            n = state["next"]
            if n >= total:
                return
            state["next"] += 1
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        host, port = targets[n % len(targets)]
        try:
            conn = conns.get((host, port)) or http.client.HTTPConnection(host, port, timeout=5)
            conns[(host, port)] = conn
            conn.request("GET", "/", headers={"X-Request-ID": f"{prefix}-{n}", "User-Agent": "logging-bench"})
            resp = conn.getresponse()
            resp.read()
            good = resp.status == 200
        except (OSError, http.client.HTTPException):
            conns.pop((host, port), None)
            good = False
        with lock:
            state["ok" if good else "failed"] += 1
threads = [threading.Thread(target=worker) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"sent": total, "ok": state["ok"], "failed": state["failed"], "wall": time.monotonic() - start}))
"""


# Runs on the app host: Fluent Bit's own counters (its monitoring API, on the host's internal address).
_FLUENT_BIT_COUNTERS = r"""
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    m = json.load(r)
out = m["output"]["loki.0"]
print(json.dumps({"in": sum(i["records"] for n, i in m["input"].items() if n.startswith("systemd")),
                  "out": out["proc_records"], "retried": out["retried_records"], "dropped": out["dropped_records"]}))
"""


def fluent_bit_counters(app: str) -> dict[str, int]:
    url = f"http://{lab.address(app)}:{lab.port(app, 'fluent_bit_http_port')}/api/v1/metrics"
    return json.loads(lab.testinfra_host(app).check_output(f"python3 -c {shlex.quote(_FLUENT_BIT_COUNTERS)} {url}"))


def journal_lines(app: str, prefix: str, since_s: float) -> int:
    """The app's access lines of this step in the host's journal (what journald kept)."""
    command = (f"journalctl --since @{since_s:.0f} --unit 'webapp@*' --output cat --no-pager "
               f"| grep -c -F {shlex.quote(chr(34) + prefix + '-')} || true")
    return int(lab.testinfra_host(app).check_output(command) or 0)


def ship_step(loki: Loki, lb: str, app: str, rate: float, seconds: float, catch_up: float) -> dict:
    """One step of the sustained test: sent, answered, every hop's count, the rate achieved, the catch-up time."""
    targets = [[lab.address(app), p] for p in lab.app_ports(app)]
    for host, _ in targets:
        loadgen.check_target(f"http://{host}/", loadgen.lab_networks())
    prefix = f"ship-{uuid.uuid4().hex[:12]}"
    since = time.time_ns() - 10**9
    before = fluent_bit_counters(app)
    remote = f"timeout {seconds + 60:.0f} python3 -c {shlex.quote(_GENERATOR)} {shlex.quote(json.dumps(targets))} {prefix} {rate} {seconds}"
    sent = json.loads(lab.testinfra_host(lb).check_output(remote))
    done = time.monotonic()
    query = f'{{service="webapp", host="{app}"}} |= "{prefix}-"'
    stored = loki.count(query, since)
    while stored < sent["ok"] and time.monotonic() - done < catch_up:
        time.sleep(1)
        stored = loki.count(query, since)
    after = fluent_bit_counters(app)
    hops = {"journal": journal_lines(app, prefix, since / 1e9 - 1),
            **{f"fluent_bit_{k}": after[k] - before[k] for k in after}}
    return {"rate": rate, **sent, "achieved": sent["ok"] / sent["wall"], **hops, "stored": stored,
            "catch_up_s": time.monotonic() - done}


def buffer_per_line(mon: str, lb: str, app: str, lines: int, rate: float) -> float:
    """Bytes of Fluent Bit's disk buffer per app line: Loki stopped, `lines` marked requests sent
    to `app`, the growth of its buffer folder measured, Loki started again (it then takes the
    backlog). What fluent_bit_storage_total_limit_size holds follows from it."""
    host, buffer = lab.testinfra_host(app), lab.role_defaults()["fluent_bit_storage_path"]

    def size() -> int:
        return int(host.check_output(f"du -sb {shlex.quote(buffer)} | cut -f1"))

    targets = [[lab.address(app), p] for p in lab.app_ports(app)]
    monitoring = lab.testinfra_host(mon)
    monitoring.check_output("systemctl stop loki")
    try:
        empty = size()
        remote = (f"timeout {lines / rate + 60:.0f} python3 -c {shlex.quote(_GENERATOR)} {shlex.quote(json.dumps(targets))} "
                  f"buffer-{uuid.uuid4().hex[:12]} {rate} {lines / rate}")
        sent = json.loads(lab.testinfra_host(lb).check_output(remote))
        time.sleep(3)  # a flush interval: the last lines reach the buffer
        grown = size() - empty
    finally:
        monitoring.check_output("systemctl start loki")
    return grown / sent["ok"]


def lost_at(step: dict) -> str:
    """Where a step's missing lines went: the first hop whose count falls short of the answered requests."""
    if step["journal"] < step["ok"]:
        return f"journald kept {step['journal']} of {step['ok']} lines"
    if step["fluent_bit_dropped"]:
        return f"Fluent Bit dropped {step['fluent_bit_dropped']} records"
    return f"Loki holds {step['stored']} of {step['ok']} lines (Fluent Bit sent {step['fluent_bit_out']})"


def parse_size(text: str) -> int:
    """A Fluent Bit size (1G, 512M, 64K, bytes) in bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    text = str(text).strip().upper().removesuffix("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=30, help="marked requests for the latency")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between two Loki queries while waiting")
    parser.add_argument("--timeout", type=float, default=60, help="longest wait for one request's lines")
    parser.add_argument("--start-rate", type=float, default=50, help="lines/s of the first sustained step")
    parser.add_argument("--max-rate", type=float, default=3200, help="highest rate tried")
    parser.add_argument("--seconds", type=float, default=30, help="length of each sustained step")
    parser.add_argument("--catch-up", type=float, default=60, help="longest wait for a step's lines to reach Loki")
    parser.add_argument("--buffer-lines", type=int, default=0,
                        help="also measure Fluent Bit's disk buffer per line with Loki stopped for this many lines (0: no)")
    args = parser.parse_args()
    if args.samples < 1 or args.seconds <= 0 or args.seconds * args.max_rate > 200_000:
        raise SystemExit("bench: --samples at least 1, and at most 200000 requests in one step")

    mon, lb, app = lab.hosts("monitoring")[0], lab.hosts("lb")[0], lab.hosts("app")[0]
    if not lab.hostvars(mon)["loki_enabled"]:
        raise SystemExit("bench: this lab has no Loki (no .deb files in ../shared/vendor nor LAB_LOKI_DEBS)")
    loki = Loki(lab.loki_url(name=mon), lab.loki_query_auth(mon))
    print(f"bench: lab {os.environ.get('LAB_NAME', 'lab')}, Loki {loki.url}, load balancer {lab.lb_url(lb)}", file=sys.stderr)

    latencies = latency_samples(loki, lab.lb_url(lb), args.samples, args.timeout, args.poll)
    print(f"bench: latency over {len(latencies)} requests: median {statistics.median(latencies):.2f} s, "
          f"max {max(latencies):.2f} s", file=sys.stderr)

    best: dict | None = None
    limit = f"highest rate tried, {args.max_rate:.0f}/s"
    rate = args.start_rate
    while rate <= args.max_rate:
        step = ship_step(loki, lb, app, rate, args.seconds, args.catch_up)
        print(f"bench: {app} at {rate:.0f} lines/s for {args.seconds:.0f} s: {json.dumps(step)}", file=sys.stderr)
        if step["failed"]:
            limit = f"the app failed requests at {rate:.0f}/s"
            break
        if step["stored"] != step["ok"]:
            limit = f"{step['ok'] - step['stored']} of {step['ok']} lines missing at {rate:.0f}/s: {lost_at(step)}"
            break
        best = step
        if step["achieved"] < 0.9 * rate:
            limit = f"the app took only {step['achieved']:.0f} of {rate:.0f}/s"
            break
        rate *= 2
    print(f"bench: sustained rate limited by: {limit}", file=sys.stderr)
    if args.buffer_lines:
        per_line = buffer_per_line(mon, lb, app, args.buffer_lines, min(200.0, args.max_rate))
        limit_bytes = lab.role_defaults()["fluent_bit_storage_total_limit_size"]
        print(f"bench: Fluent Bit's disk buffer takes {per_line:.0f} bytes per app line; its limit "
              f"({limit_bytes}) holds about {parse_size(limit_bytes) / per_line / 1e6:.1f} million lines", file=sys.stderr)

    header = ["logging", "samples", "latency p50 s", "latency p99 s", "lines/s shipped, none lost", "step s"]
    sustained = "-" if best is None else f"{best['achieved']:.0f} ({limit})"
    row = ["request -> Nginx + app lines in Loki", str(len(latencies)), f"{statistics.median(latencies):.2f}",
           f"{percentile(latencies, 0.99):.2f}", f"{sustained} ({app})", f"{args.seconds:.0f}"]
    widths = [max(len(a), len(b)) for a, b in zip(header, row)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    return 0 if best is not None else 1


if __name__ == "__main__":
    sys.exit(main())
