#!/usr/bin/env python3
"""Benchmark the load balancers' failover on the lab under steady load, and print one table.

The load balancers share a floating address (roles/keepalived). For each round, load
goes through that address while the load balancer holding it fails: the whole host is
stopped (lab/lab stop), or only its Nginx (systemctl stop nginx), or its Nginx stops
answering (frozen with SIGSTOP, caught by keepalived's check). The other one takes the
address over; then the failed one comes back (lab/lab start, systemctl start nginx,
SIGCONT) and must not take it back. Per kind of failure the table gives the failed
requests and the gap (the longest time without a successful answer) after the failure,
when the last failed request started, and the failed requests when the failed host came
back: medians over the rounds, and totals of requests and failures. Load goes only to
the lab's floating address (bench/loadgen.py: bounded in time and count).

    ./stack lab                          # a converged lab first
    .venv/bin/python bench/failover.py   # LAB_NAME / LAB_NET select the lab, as for lab/lab

The figures and the lookup of the holder are also what the lab tests use
(molecule/default/tests/test_failover.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import loadgen
from bench import BIN, ROOT, env, lb_url

LAB = ROOT / "lab" / "lab"


@dataclass(frozen=True)
class Figures:
    """What clients saw of one failure: from `since` (the failure) to `until` (the recovery step)."""

    requests: int
    failed: int
    gap: float  # the longest time in the window without a successful answer, seconds
    last_failure: float  # when the last failed request started, seconds after `since`; 0 without one


def figures(result: loadgen.Result, since: float, until: float) -> Figures:
    """Failed requests and gap of the samples that started within [since, until)."""
    window = [s for s in result.samples if since <= s.start < until]
    failed = [s for s in window if not s.ok]
    # Successful answers end the gaps; the window's edges bound them.
    ends = sorted(s.start + s.latency for s in result.samples if s.ok and since <= s.start + s.latency < until)
    marks = [since, *ends, min(until, max((s.start + s.latency for s in window), default=since))]
    gap = max((b - a for a, b in zip(marks, marks[1:])), default=0.0)
    last = max((s.start - since for s in failed), default=0.0)
    return Figures(len(window), len(failed), round(gap, 3), round(last, 3))


def holders(run: Callable[[str, str], str], names: list[str], address: str) -> list[str]:
    """The hosts among `names` whose interfaces hold `address`; `run(host, command)` gives its output
    ("" for a host that does not answer)."""
    return [n for n in names if f" {address}/" in run(n, f"ip -4 -o addr show to {address}")]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until check() holds; exits when it does not within timeout."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"failover: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - start


def lab_run(host: str, command: str) -> str:
    """A command on a lab host over the lab's SSH (as its user deploy, through sudo); its output, ""
    when the host does not answer."""
    proc = subprocess.run([str(LAB), "ssh", host, f"sudo -n sh -c {shlex.quote(command)}"], env=env(), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    return proc.stdout if proc.returncode == 0 else ""


def lab(*args: str) -> None:
    subprocess.run([str(LAB), *args], env=env(), check=True, capture_output=True, timeout=300)


def lab_lbs() -> tuple[list[str], str]:
    """The lab inventory's load balancers and their floating address."""
    out = subprocess.run(
        [str(BIN / "ansible"), "-i", str(ROOT / "inventories" / "lab"), "lb", "--one-line", "-m",
         "ansible.builtin.debug", "-a", "msg={{ keepalived_virtual_address | default('') }}"],
        cwd=ROOT, env=env(), capture_output=True, text=True, check=True,
    ).stdout
    found = {line.split(" | ")[0]: json.loads(line.split("=>", 1)[1])["msg"] for line in out.splitlines() if "=>" in line}
    return sorted(found), next(iter(found.values()), "")


@dataclass(frozen=True)
class Round:
    failover: Figures
    comeback: Figures
    moved_to: str
    stayed: bool  # the address stayed on the new holder when the failed one came back


FAILURES = {
    "host": ("the holder stopped (lab/lab stop)", ("stop",), ("start",)),
    "nginx": ("Nginx stopped on the holder", "systemctl stop nginx", "systemctl start nginx"),
    # Every Nginx process (systemctl kill reaches only the master in the lab's containers).
    "frozen": ("Nginx not answering on the holder (SIGSTOP)", "kill -STOP $(pidof nginx)", "kill -CONT $(pidof nginx)"),
}


def one_round(opts: argparse.Namespace, url: str, kind: str, lbs: list[str], address: str) -> Round:
    """Fail the holder under load, let the other take over, bring the failed one back."""
    _, fail, repair = FAILURES[kind]
    holder = holders(lab_run, lbs, address)
    if len(holder) != 1:
        raise SystemExit(f"failover: {holder or 'no host'} hold {address}; expected exactly one")
    victim, others = holder[0], [n for n in lbs if n != holder[0]]
    load = loadgen.Load(url, workers=opts.workers, interval=opts.interval,
                        max_seconds=opts.max_seconds, max_requests=opts.max_requests).start()
    try:
        time.sleep(3)
        failed_at = time.monotonic()
        if kind == "host":
            lab(*fail, victim)
        else:
            lab_run(victim, str(fail))
        wait_for(lambda: holders(lab_run, others, address) != [], 60, f"the takeover of {address}")
        moved_to = holders(lab_run, others, address)[0]
        time.sleep(opts.settle)
        repaired_at = time.monotonic()
        if kind == "host":
            lab(*repair, victim)
        else:
            lab_run(victim, str(repair))
        wait_for(lambda: lab_run(victim, "systemctl is-active keepalived nginx").split() == ["active", "active"],
                 120, f"keepalived and nginx on {victim}")
        time.sleep(opts.settle)
        ended_at = time.monotonic()
    finally:
        result = load.stop()
    if result.requests >= opts.max_requests or result.wall >= opts.max_seconds:
        raise SystemExit("failover: the load reached its bound; raise --max-requests/--max-seconds")
    before = figures(result, 0.0, failed_at)
    if before.failed:
        raise SystemExit(f"failover: {before.failed} requests failed before the failure; the lab is not healthy")
    return Round(figures(result, failed_at, repaired_at), figures(result, repaired_at, ended_at),
                 moved_to, holders(lab_run, lbs, address) == [moved_to])


def row(name: str, rounds: list[Round]) -> list[str]:
    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}"

    return [
        name,
        str(len(rounds)),
        str(sum(r.failover.requests + r.comeback.requests for r in rounds)),
        f"{statistics.median(r.failover.failed for r in rounds):g} (max {max(r.failover.failed for r in rounds)})",
        f"{med([r.failover.gap for r in rounds])} (max {max(r.failover.gap for r in rounds):.2f})",
        f"{med([r.failover.last_failure for r in rounds])} (max {max(r.failover.last_failure for r in rounds):.2f})",
        str(sum(r.comeback.failed for r in rounds)),
        f"{sum(r.stayed for r in rounds)}/{len(rounds)}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each kind of failure")
    parser.add_argument("--kinds", default="host,nginx,frozen", help=f"kinds of failure, of {', '.join(FAILURES)}")
    parser.add_argument("--workers", type=int, default=4, help="load generator threads")
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between a thread's requests")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of load after each step")
    parser.add_argument("--max-seconds", type=float, default=600, help="time bound of each load run")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="count bound of each load run")
    args = parser.parse_args()

    lbs, address = lab_lbs()
    if len(lbs) < 2 or not address:
        raise SystemExit(f"failover: the lab inventory has {len(lbs)} load balancer(s) and floating address {address!r}")
    url = lb_url()
    loadgen.check_target(url, loadgen.lab_networks())
    print(f"failover: lab {os.environ.get('LAB_NAME', 'lab')}, load balancers {', '.join(lbs)}, {url}", file=sys.stderr)
    rows = []
    for kind in args.kinds.split(","):
        rounds = []
        for n in range(1, args.rounds + 1):
            r = one_round(args, url, kind, lbs, address)
            print(f"failover: {kind} round {n}: {r}", file=sys.stderr)
            rounds.append(r)
        rows.append(row(FAILURES[kind][0], rounds))

    header = ["failure", "rounds", "requests", "failed (median)", "gap s (median)", "last failure s (median)",
              "failed on return", "address stayed"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for i, r in enumerate([header, *rows]):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return 0


if __name__ == "__main__":
    sys.exit(main())
