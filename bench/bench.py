#!/usr/bin/env python3
"""Benchmark releases on the lab under steady load, and print one table.

For each round: build a new release (outside the measurement), deploy it with
playbooks/deploy.yml while bench/loadgen.py drives load through the load balancer, then
roll it back with playbooks/rollback.yml under the same load. Finally, time a no-change
re-run of site.yml. Reports medians over the rounds, and the totals of requests and
failed requests. Load goes only to the lab's load balancer (bounded in time and count).

    ./stack lab                       # a converged lab first
    .venv/bin/python bench/bench.py   # LAB_NAME / LAB_NET select the lab, as for lab/lab
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import loadgen

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class Round:
    wall: float
    summary: dict[str, object]


def env() -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }


def playbook(*args: str) -> float:
    """Run ansible-playbook against the lab; its wall time, or exit with its output."""
    cmd = [str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "lab"), *args]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-2000:])
        raise SystemExit(f"bench: {' '.join(args)} failed (exit {proc.returncode})")
    return wall


def lb_url() -> str:
    """The URL clients use: at the load balancers' floating address when the inventory gives one."""
    out = subprocess.run(
        [str(BIN / "ansible"), "-i", str(ROOT / "inventories" / "lab"), "lb", "--one-line", "-m",
         "ansible.builtin.debug", "-a", "msg={{ ('https://' ~ (keepalived_virtual_address | default(internal_address, true))"
         " ~ ':' ~ nginx_tls_port | default(443)) if nginx_tls_certificate | default('') else ('http://'"
         " ~ (keepalived_virtual_address | default(internal_address, true)) ~ ':' ~ nginx_listen_port | default(80)) }}/"],
        cwd=ROOT, env=env(), capture_output=True, text=True, check=True,
    ).stdout
    first = out.splitlines()[0]
    return json.loads(first.split("=>", 1)[1])["msg"]


def build_new_release() -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_release.py"), "--force"],
        cwd=ROOT, env=env(), capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)["artifact"]


def under_load(opts: argparse.Namespace, url: str, *args: str) -> Round:
    """Run a playbook while the load generator runs; settle a second on either side.
    Exits when the load stopped at one of its bounds before the playbook ended."""
    load = loadgen.Load(url, workers=opts.workers, interval=opts.interval,
                        max_seconds=opts.max_seconds, max_requests=opts.max_requests).start()
    time.sleep(1)
    wall = playbook(*args)
    time.sleep(1)
    result = load.stop()
    if result.requests >= opts.max_requests or result.wall >= opts.max_seconds:
        raise SystemExit(f"bench: the load reached its bound before {args[0]} ended; raise --max-requests/--max-seconds")
    return Round(wall, result.summary())


def row(name: str, rounds: list[Round]) -> list[str]:
    def med(key: str) -> float:
        return statistics.median(float(r.summary[key]) for r in rounds)

    return [
        name,
        str(len(rounds)),
        f"{statistics.median(r.wall for r in rounds):.1f}",
        str(sum(int(r.summary["requests"]) for r in rounds)),
        str(sum(int(r.summary["failed"]) for r in rounds)),
        f"{med('p50_ms'):.2f}",
        f"{med('p99_ms'):.2f}",
        f"{med('rps'):.0f}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="load generator threads")
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between a thread's requests")
    parser.add_argument("--max-seconds", type=float, default=600, help="time bound of each load run")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="count bound of each load run")
    args = parser.parse_args()

    url = lb_url()
    loadgen.check_target(url, loadgen.lab_networks())
    print(f"bench: lab {os.environ.get('LAB_NAME', 'lab')}, load balancer {url}", file=sys.stderr)
    playbook("site.yml")  # converged, so the rounds start from the same state
    deploys: list[Round] = []
    rollbacks: list[Round] = []
    for n in range(1, args.rounds + 1):
        artifact = build_new_release()
        print(f"bench: round {n}: deploy {Path(artifact).name}", file=sys.stderr)
        deploys.append(under_load(args, url, "playbooks/deploy.yml", "-e", f"webapp_artifact={artifact}"))
        print(f"bench: round {n}: rollback", file=sys.stderr)
        rollbacks.append(under_load(args, url, "playbooks/rollback.yml"))
    rerun = [playbook("site.yml") for _ in range(args.rounds)]

    header = ["operation", "rounds", "wall s (median)", "requests", "failed", "p50 ms", "p99 ms", "req/s"]
    rows = [
        row("rolling deploy of a new release", deploys),
        row("rollback to the previous release", rollbacks),
        ["no-change re-run of site.yml", str(len(rerun)), f"{statistics.median(rerun):.1f}", "-", "-", "-", "-", "-"],
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for i, r in enumerate([header, *rows]):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    failed = sum(int(r.summary["failed"]) for r in deploys + rollbacks)
    if failed:
        errors: dict[str, int] = {}
        for r in deploys + rollbacks:
            for k, v in dict(r.summary["errors"]).items():  # type: ignore[call-overload]
                errors[k] = errors.get(k, 0) + v
        print(f"failed requests by cause: {errors}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
