#!/usr/bin/env python3
"""Time releases, rollbacks and no-change runs on the lab, idle and under load; print one table.

Each operation is what an operator runs: `playbooks/deploy.yml -e webapp_build_force=true`
(build with the app's tests, install, rolling switch), `playbooks/rollback.yml`, the deploy of
an artifact built before (`deploy.yml -e webapp_artifact=...`, what CI/CD promotes; its build,
by `playbooks/build.yml`, is not timed) and a no-change `site.yml` (which must report changed=0
on every host). Each runs --rounds times
on an idle lab, then as often under a steady load through the load balancer from Debian's
`wrk` (one thread, paced by bench/pace.lua, so it leaves the cores to the deploy; its own CPU
time is reported). Wall times are medians, and each is also given as a ratio to one
`ansible all -m ping` of the same run (the fixed cost of reaching the hosts), so figures
compare across machines. Every failed request (connect/read/write errors, timeouts, HTTP
status >= 400) is counted; the bench exits 1 if there was any. Load goes only to the lab's
load balancer, bounded in time.

    ./stack lab                       # a converged lab first
    .venv/bin/python bench/bench.py   # LAB_NAME / LAB_NET select the lab, as for lab/lab

With --deploy-var NAME=VALUE (repeatable) each deploy gets that extra variable: the deploy with
the canary analysis on is `--ops deploy --deploy-var app_canary_seconds=20`.

With --floors it measures, besides, what the operations cannot go below on this machine: a
rollback's floor (bench/floor_rollback.sh on every app host at once, one ad-hoc task: the link
swapped, each instance restarted until it answers) and the no-change site.yml's floor (its own
tasks, as a no-change run recorded them, each replaced by a no-op on the hosts it ran on:
ansible.builtin.ping where it ran a module, debug where it ran on the controller), each median
also as a ratio to the operation's.

With --app-hosts 2 4 6 it measures how deploy and rollback grow with the fleet instead: for each
count it grows the lab to that many app hosts (LAB_APP_HOSTS, lab/lab up), converges it with
site.yml, deploys once untimed (every host then holds the release the rollbacks go back to),
times deploy and rollback on the idle lab (--rounds each) and prints a growth table: medians,
and each as a ratio to the first count's. With --floors the rollback's floor is timed for each
count too; with --ops naming neither deploy nor rollback, only the floor (no converge).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import loadgen
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PACE = Path(__file__).resolve().parent / "pace.lua"
# The operations an operator runs, as the table names them.
OPS = {"deploy": "deploy a new release", "rollback": "rollback",
       "deploy_artifact": "deploy of a built artifact", "no_change": "no-change site.yml"}
# The artifact playbooks/build.yml shows ("Release <id> (...), <path>").
ARTIFACT = re.compile(r"(/\S+/webapp-[0-9]{8}T[0-9]{6}Z-\w+\.tar\.gz)")
# Actions that run on the controller, not on the host (a floor task replaces them with debug).
LOCAL_ACTIONS = {f"{prefix}{name}" for prefix in ("", "ansible.builtin.") for name in (
    "set_fact", "assert", "debug", "fail", "meta", "include_role", "include_tasks", "import_role", "import_tasks",
    "validate_argument_spec", "add_host", "group_by", "include_vars")}
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", re.M)


@dataclass(frozen=True)
class Load:
    """What wrk saw during one operation, and what it cost."""

    requests: int
    failed: int
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    cpu_share: float  # wrk's CPU seconds over its wall seconds (1.0 = one whole core)


@dataclass(frozen=True)
class Run:
    wall: float
    tasks: int  # tasks the run started (TASK lines, skipped ones included)
    load: Load | None


def env(mitogen: bool = False) -> dict[str, str]:
    """The environment of every timed command: the repository's ansible.cfg (Ansible's own linear
    strategy), or with `mitogen` Mitogen's (strategy_plugins/mitogen_linear.py), all else the same."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        **({"ANSIBLE_STRATEGY": "mitogen_linear"} if mitogen else {}),
    }


class Bench:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.env = env(opts.mitogen)
        self.count = 0
        self.timed: Path | None = None  # where the next run records its tasks (the floor's source)
        self._floor: Path | None = None

    def run(self, tool: str, *args: str) -> tuple[float, str]:
        """Run an Ansible command against the lab: its wall time and output, or exit with the output."""
        cmd = [str(BIN / tool), "-i", str(ROOT / "inventories" / "lab"), *args]
        self.count += 1
        name = f"{self.count:02d}-{tool}-{Path(args[0]).stem}"
        extra: dict[str, str] = {}
        timing = self.timed or (self.opts.log.resolve() / f"{name}.tasks.jsonl" if self.opts.log and self.opts.profile
                                else None)
        if timing:  # each task's wall time and hosts, by bench/callback_plugins/bench_timing.py
            extra = {"ANSIBLE_CALLBACK_PLUGINS": str(Path(__file__).resolve().parent / "callback_plugins"),
                     "ANSIBLE_CALLBACKS_ENABLED": "bench_timing",
                     "BENCH_TIMING_FILE": str(timing)}
        if self.opts.log:
            self.opts.log.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env={**self.env, **extra}, capture_output=True, text=True)
        wall = time.monotonic() - start
        if self.opts.log:
            (self.opts.log / f"{name}.log").write_text(f"# {' '.join(cmd)}\n# wall {wall:.2f} s\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-2000:])
            raise SystemExit(f"bench: {tool} {' '.join(args)} failed (exit {proc.returncode})")
        return wall, proc.stdout

    def ping(self) -> float:
        return self.run("ansible", "all", "-m", "ansible.builtin.ping")[0]

    def deploy(self) -> tuple[float, str]:
        more = [arg for var in self.opts.deploy_var for arg in ("-e", var)]
        return self.run("ansible-playbook", "playbooks/deploy.yml", "-e", "webapp_build_force=true", *more)

    def rollback(self) -> tuple[float, str]:
        return self.run("ansible-playbook", "playbooks/rollback.yml")

    def deploy_artifact(self) -> tuple[float, str]:
        """What a promotion costs (CI/CD deploys an artifact built before): a new release built
        untimed with playbooks/build.yml, then deploy.yml -e webapp_artifact=<it> timed alone."""
        _, out = self.run("ansible-playbook", "playbooks/build.yml", "-e", "webapp_build_force=true")
        found = ARTIFACT.findall(out)
        if not found:
            raise SystemExit("bench: playbooks/build.yml showed no artifact:\n" + out[-3000:])
        more = [arg for var in self.opts.deploy_var for arg in ("-e", var)]
        return self.run("ansible-playbook", "playbooks/deploy.yml", "-e", f"webapp_artifact={found[-1]}", *more)

    def floor_rollback(self) -> tuple[float, str]:
        unit = yaml.safe_load((ROOT / "roles" / "app" / "vars" / "main.yml").read_text())["_app_unit_name"]
        return self.run("ansible", "app", "--become", "-m", "ansible.builtin.script",
                        "-a", f"{Path(__file__).resolve().parent / 'floor_rollback.sh'} {unit}")

    def floor_no_change(self) -> tuple[float, str]:
        return self.run("ansible-playbook", str(self.floor_playbook()))

    def floor_playbook(self) -> Path:
        """The no-change site.yml's tasks, each a no-op on the hosts it ran on (built once, from a recorded run)."""
        if self._floor:
            return self._floor
        path = (self.opts.log or Path("/tmp")).resolve() / "floor-no-change.yml"
        record = path.with_suffix(".tasks.jsonl")
        record.unlink(missing_ok=True)
        self.timed = record
        try:
            self.no_change()
        finally:
            self.timed = None
        tasks = []
        for n, line in enumerate(record.read_text().splitlines()):
            task = json.loads(line)
            if task["task"].startswith("(") or not task.get("action"):
                continue
            local = task["action"] in LOCAL_ACTIONS
            tasks.append({"name": f"Floor {n}", "when": f"inventory_hostname in {task['ran']!r}",
                          **({"ansible.builtin.debug": {"msg": task["task"]}} if local else {"ansible.builtin.ping": {}})})
        path.write_text(yaml.safe_dump([{"name": "The no-change site.yml's tasks, each a no-op", "hosts": "all",
                                         "gather_facts": False, "become": True, "tasks": tasks}], sort_keys=False))
        self._floor = path
        return path

    def no_change(self) -> tuple[float, str]:
        wall, out = self.run("ansible-playbook", "site.yml")
        changed = {host: int(n) for host, n in RECAP.findall(out) if int(n)}
        if changed:
            raise SystemExit(f"bench: the no-change run of site.yml changed something: {changed}")
        return wall, out


class Wrk:
    """Debian's wrk against the load balancer, from start() until stop() (SIGINT, then its summary)."""

    def __init__(self, url: str, opts: argparse.Namespace) -> None:
        self.cmd = ["wrk", "--threads", "1", "--connections", str(opts.connections), "--duration",
                    f"{int(opts.max_seconds)}s", "--timeout", f"{opts.timeout}s", "--script", str(PACE), url]
        self.interval = opts.interval_ms

    def start(self) -> Wrk:
        self.began = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "BENCH_INTERVAL_MS": str(self.interval)})
        return self

    def stop(self) -> Load:
        if self.proc.poll() is not None:
            raise SystemExit("bench: wrk ended before the operation did; raise --max-seconds")
        self.proc.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - self.began
        out = self.proc.stdout.read() if self.proc.stdout else ""
        line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
        if line is None:
            raise SystemExit(f"bench: wrk printed no summary:\n{out}")
        s = json.loads(line.removeprefix("BENCH "))
        errors = {k: int(s[k]) for k in ("connect", "read", "write", "timeout", "status") if s[k]}
        return Load(requests=int(s["requests"]), failed=sum(errors.values()), errors=errors,
                    p50_ms=s["p50_us"] / 1000, p99_ms=s["p99_us"] / 1000,
                    cpu_share=(usage.ru_utime + usage.ru_stime) / wall)


def measure(bench: Bench, url: str, loaded: bool, operation: str) -> Run:
    """One operation; under load, wrk runs from a second before it to a second after."""
    step = getattr(bench, operation)
    wrk = Wrk(url, bench.opts).start() if loaded else None
    if wrk:
        time.sleep(1)
    wall, out = step()
    if wrk:
        time.sleep(1)
    return Run(wall, out.count("\nTASK ["), wrk.stop() if wrk else None)


def row(name: str, mode: str, runs: list[Run], ping: float) -> list[str]:
    wall = statistics.median(r.wall for r in runs)
    tasks = statistics.median(r.tasks for r in runs)
    cells = [name, mode, str(len(runs)), f"{wall:.1f}", f"{wall / ping:.1f}", f"{tasks:.0f}", f"{wall / tasks:.2f}"]
    loads = [r.load for r in runs if r.load]
    if not loads:
        return [*cells, "-", "-", "-", "-", "-"]
    return [
        *cells,
        str(sum(ld.requests for ld in loads)),
        str(sum(ld.failed for ld in loads)),
        f"{statistics.median(ld.p50_ms for ld in loads):.1f}",
        f"{statistics.median(ld.p99_ms for ld in loads):.1f}",
        f"{100 * statistics.median(ld.cpu_share for ld in loads):.0f}%",
    ]


def floors(bench: Bench, opts: argparse.Namespace, rows: list[list[str]], ping: float) -> str:
    """The floors' table: each floor's median (idle), as a ratio to ping and to its operation's idle median."""
    idle = {r[0]: float(r[3]) for r in rows if r[1] == "idle"}
    bench.floor_playbook()  # recorded from a no-change run first, outside the timed rounds
    out = []
    for op, name in (("rollback", "floor_rollback"), ("no_change", "floor_no_change")):
        runs = []
        for n in range(1, opts.rounds + 1):
            runs.append(measure(bench, "", False, name))
            print(f"bench: floor of {OPS[op]}, round {n}: {runs[-1].wall:.1f} s", file=sys.stderr)
        wall = statistics.median(r.wall for r in runs)
        tasks = statistics.median(r.tasks for r in runs) if op == "no_change" else 1
        ratio = f"{idle[OPS[op]] / wall:.1f}" if OPS[op] in idle else "-"
        out.append([f"floor of {OPS[op]}", str(len(runs)), f"{wall:.1f}", f"{wall / ping:.1f}", f"{tasks:.0f}",
                    f"{idle[OPS[op]]:.1f}" if OPS[op] in idle else "-", ratio])
    header = ["floor", "rounds", "wall s", "x ping", "tasks", "operation s (idle)", "operation x floor"]
    widths = [max(len(r[i]) for r in [header, *out]) for i in range(len(header))]
    lines = []
    for i, r in enumerate([header, *out]):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def table(rows: list[list[str]]) -> str:
    header = ["operation", "load", "rounds", "wall s", "x ping", "tasks", "s/task", "requests", "failed", "p50 ms",
              "p99 ms", "wrk CPU"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for i, r in enumerate([header, *rows]):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def growth(opts: argparse.Namespace) -> int:
    """Medians for each app-host count, the lab grown to each in turn: deploy and rollback (those of
    --ops), with --floors the rollback's floor too, and ping; each also as a ratio to the first count's."""
    ops = [op for op in ("deploy", "rollback") if op in opts.ops] + (["floor_rollback"] if opts.floors else [])
    labels = {"deploy": "deploy", "rollback": "rollback", "floor_rollback": "rollback floor"}
    rows: list[list[str]] = []
    first: dict[str, float] = {}
    for count in opts.app_hosts:
        os.environ["LAB_APP_HOSTS"] = str(count)
        print(f"bench: growing the lab to {count} app hosts", file=sys.stderr)
        subprocess.run([str(ROOT / "lab" / "lab"), "up"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        bench = Bench(opts)
        if {"deploy", "rollback"} & set(ops):
            bench.run("ansible-playbook", "site.yml")  # the new hosts converged
            # Untimed: one deploy puts every host, old and new, on one release the fleet was deployed to,
            # so each round's rollback (to the release before its deploy) finds it on every host.
            bench.deploy()
        medians = {"ping": statistics.median(bench.ping() for _ in range(opts.rounds))}
        done: dict[str, list[float]] = {op: [] for op in ops}
        for n in range(1, opts.rounds + 1):
            for op in done:
                done[op].append(getattr(bench, op)()[0])
                print(f"bench: {count} app hosts, round {n}: {labels[op]} {done[op][-1]:.1f} s", file=sys.stderr)
        medians.update({op: statistics.median(walls) for op, walls in done.items()})
        first = first or medians
        rows.append([str(count)] + [cell for op in ["ping", *ops] for cell in
                                    (f"{medians[op]:.2f}" if op == "ping" else f"{medians[op]:.1f}",
                                     f"{medians[op] / first[op]:.2f}")])
    header = ["app hosts"] + [cell for op in ["ping", *ops] for cell in
                              (f"{labels.get(op, op)} s", f"{labels.get(op, op)} x first")]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for i, r in enumerate([header, *rows]):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(f"medians of {opts.rounds} idle rounds each; forks {forks()}")
    return 0


def forks() -> str:
    """The forks Ansible runs with (ANSIBLE_FORKS, else ansible.cfg's)."""
    if os.environ.get("ANSIBLE_FORKS"):
        return os.environ["ANSIBLE_FORKS"]
    found = re.search(r"^forks\s*=\s*(\d+)", (ROOT / "ansible.cfg").read_text(), re.M)
    return found.group(1) if found else "5"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4, help="wrk's keep-alive connections")
    parser.add_argument("--interval-ms", type=int, default=10, help="pause of each connection between requests")
    parser.add_argument("--timeout", type=int, default=5, help="seconds after which wrk counts a request failed")
    parser.add_argument("--max-seconds", type=float, default=600, help="time bound of each load run")
    parser.add_argument("--idle-only", action="store_true", help="skip the runs under load")
    parser.add_argument("--deploy-var", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra variable of each deploy (repeatable), e.g. app_canary_seconds=20")
    parser.add_argument("--mitogen", action="store_true", help="run Ansible with Mitogen's mitogen_linear strategy")
    parser.add_argument("--log", type=Path, help="keep each command's output in this folder")
    parser.add_argument("--profile", action="store_true", help="with --log, also each task's wall time (*.tasks.jsonl)")
    parser.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS),
                        help="the operations to time (default: all); no_change alone times what a no-change site.yml costs")
    parser.add_argument("--floors", action="store_true",
                        help="also time the floors of a rollback and of the no-change site.yml (idle), see above")
    parser.add_argument("--app-hosts", type=int, nargs="+", metavar="N",
                        help="a growth table instead: deploy and rollback (those of --ops; with --floors the "
                             "rollback's floor too) with each number of app hosts, growing the lab")
    opts = parser.parse_args()
    if opts.app_hosts:
        return growth(opts)
    if not opts.idle_only and shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is missing (apt-get install wrk, or ./stack deps)")

    url = lb_url()
    loadgen.check_target(url, loadgen.lab_networks())
    bench = Bench(opts)
    print(f"bench: lab {os.environ.get('LAB_NAME', 'lab')}, load balancer {url}"
          f", strategy {'mitogen_linear' if opts.mitogen else 'linear'}", file=sys.stderr)
    bench.run("ansible-playbook", "site.yml")  # converged, so the rounds start from the same state
    ping = statistics.median(bench.ping() for _ in range(opts.rounds))
    print(f"bench: ansible all -m ping: {ping:.2f} s (median of {opts.rounds})", file=sys.stderr)

    rows: list[list[str]] = []
    runs: list[Run] = []
    for mode in ["idle"] if opts.idle_only else ["idle", "wrk"]:
        loaded = mode != "idle"
        done: dict[str, list[Run]] = {op: [] for op in OPS if op in opts.ops}
        for n in range(1, opts.rounds + 1):
            for op in [op for op in ("deploy", "rollback", "deploy_artifact") if op in done]:
                done[op].append(measure(bench, url, loaded, op))
                print(f"bench: {mode} round {n}: {op} {done[op][-1].wall:.1f} s", file=sys.stderr)
        for n in range(1, opts.rounds + 1 if "no_change" in done else 1):
            done["no_change"].append(measure(bench, url, loaded, "no_change"))
            print(f"bench: {mode} round {n}: no-change site.yml {done['no_change'][-1].wall:.1f} s", file=sys.stderr)
        rows += [row(OPS[op], mode, runs_of_op, ping) for op, runs_of_op in done.items()]
        runs += [r for rs in done.values() for r in rs]

    print(table(rows))
    if opts.floors:
        print(floors(bench, opts, rows, ping))
    print(f"ansible all -m ping: {ping:.2f} s (median); wrk: 1 thread, {opts.connections} connections, "
          f"{opts.interval_ms} ms between a connection's requests")
    errors: dict[str, int] = {}
    for r in runs:
        for k, v in (r.load.errors if r.load else {}).items():
            errors[k] = errors.get(k, 0) + v
    if errors:
        print(f"failed requests by cause: {errors}", file=sys.stderr)
    return 1 if errors else 0


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


if __name__ == "__main__":
    sys.exit(main())
