"""The app's instances as the role's modules see them (webapp_instances, webapp_precheck): their
systemd units, what their health path answers (the runner's X-Release header), waits and journals."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

from ansible.module_utils.stack_http import get


def _show(unit: str, props: list[str]) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", unit, "--property=" + ",".join(props)],
                         capture_output=True, text=True, check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _started(values: dict[str, str], prop: str) -> float | None:
    """Wall-clock time (s) at which a unit's monotonic timestamp was taken, or None."""
    mono = int(values.get(prop) or 0)
    if not mono:
        return None
    return time.time() - (time.monotonic() - mono / 1e6)


def _changed_at(paths: list[str]) -> tuple[float, str]:
    newest, which = 0.0, ""
    for path in paths:
        try:
            mtime = os.lstat(path).st_mtime
        except FileNotFoundError:
            continue
        if mtime > newest:
            newest, which = mtime, path
    return newest, which


# The runner (runner/, stack_runner) names the release it serves on every answer.
RELEASE_HEADER = "X-Release"


def health(url: str, timeout: float, statuses: tuple[int, ...] = (200,)) -> tuple[int, str, str]:
    """(status, release, why not healthy) of one request of the health path; status 0 when no
    answer came. The release is the runner's X-Release header, whatever the app answered."""
    got = get(url, timeout)
    if got.error:
        return 0, "", got.error
    release = got.headers.get(RELEASE_HEADER, "") or ""
    if got.status not in statuses:
        return got.status, release, f"answered {got.status}"
    if not release:
        return got.status, "", f"answered without the {RELEASE_HEADER} header (not served by the runner)"
    return got.status, release, ""


# systemd's exit status of a service process it could not put in its cgroup (EXIT_CGROUP).
EXIT_CGROUP = 219


def host_fault(svc: dict[str, str]) -> str:
    """Why systemd could not start the service's process, when that is the host's doing and not the
    release's ('' otherwise): its cgroup refused the process (exit status 219/CGROUP), or a
    system error before the process ran (result 'resources': "Failed to spawn executor"). Seen on
    the lab's cgroup v1 hosts when a restart follows a stop while its cgroup is torn down; the
    unit's Restart= starts it again a second later."""
    if (svc.get("ExecMainCode"), svc.get("ExecMainStatus")) == ("1", str(EXIT_CGROUP)):
        return f"status {EXIT_CGROUP}/CGROUP"
    if svc.get("Result") == "resources" and svc.get("ActiveState") != "active":
        return "result 'resources'"
    return ""


def service_state(service: str) -> dict[str, str]:
    """What systemctl show says of a service unit, as observe() reads it."""
    return _show(service, ["ActiveState", "SubState", "ExecMainStartTimestampMonotonic",
                           "ExecMainExitTimestampMonotonic", "ExecMainCode", "ExecMainStatus", "Result"])


def observe(p: dict) -> list[dict]:
    host = f"[{p['address']}]" if ":" in p["address"] else p["address"]
    watched, watched_path = _changed_at(p["watch"])
    sock_watched, sock_path = _changed_at(p["socket_watch"])
    found = []
    for port in p["ports"]:
        service = f"{p['unit']}@{port}.service"
        socket_unit = f"{p['unit']}@{port}.socket"
        status, release, error = health(f"http://{host}:{port}{p['path']}", p["timeout"], tuple(p["statuses"]))
        if p["check_units"]:
            svc = service_state(service)
            sock = _show(socket_unit, ["ActiveState", "ActiveEnterTimestampMonotonic"])
        else:
            svc = sock = {"ActiveState": "active"}
        started = _started(svc, "ExecMainStartTimestampMonotonic")
        sock_started = _started(sock, "ActiveEnterTimestampMonotonic")
        reasons = []
        socket_stale = sock.get("ActiveState") != "active" or (
            sock_watched and (sock_started is None or sock_started < sock_watched))
        if sock.get("ActiveState") != "active":
            reasons.append(f"socket {sock.get('ActiveState', 'unknown')}")
        elif socket_stale:
            reasons.append(f"socket older than {sock_path}")
        # Its process exited since the restart that `since` names (or systemd shows it down): crashed.
        # Not when systemd could not start it (host_fault: before the release ran), and the wait goes
        # on for the unit's Restart=.
        exited = int(svc.get("ExecMainExitTimestampMonotonic") or 0) / 1e6
        not_started = host_fault(svc)
        crashed = not not_started and (svc.get("ActiveState") == "failed" or svc.get("SubState") == "auto-restart" or bool(
            p.get("since") and exited > p["since"]))
        if not_started:
            reasons.append(f"systemd could not start it ({not_started}); its Restart= starts it again")
        elif crashed:
            reasons.append("service exited (systemd would start it again)")
        elif svc.get("ActiveState") != "active":
            reasons.append(f"service {svc.get('ActiveState', 'unknown')}")
        elif watched and (started is None or started < watched):
            reasons.append(f"started before {watched_path} changed")
        if error:
            reasons.append(f"health: {error}")
        elif p["release"] and release != p["release"]:
            reasons.append(f"serves {release or 'no release'}, not {p['release']}")
        found.append({"port": port, "service": svc.get("ActiveState", ""), "socket": sock.get("ActiveState", ""),
                      "socket_stale": bool(socket_stale), "crashed": crashed, "status": status, "release": release,
                      "stale": bool(reasons), "reasons": reasons})
    return found


def systemctl(module: AnsibleModule, *args: str, excused: Callable[[], bool] | None = None) -> None:
    """Run systemctl; fail the module when it fails, unless `excused` (asked only then) says the
    failure is to be waited out."""
    proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0 and not (excused and excused()):
        module.fail_json(msg=f"systemctl {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def wait(p: dict, ports: list[int], crash_ends: bool = False) -> tuple[list[dict], list[int]]:
    """Observe ports until each answers as wanted or p['wait'] seconds passed; with crash_ends (an
    instance just restarted), an instance whose process exited ends the wait at once: a release
    that crashes at start is given up on in a second, not after the whole wait, while the
    connections that reached its socket wait in the backlog for the release that comes back."""
    q = {**p, "ports": ports}
    if crash_ends:  # short probes: one that waits on a crashed process's backlog must not hide the crash
        q["timeout"] = min(p["timeout"], 0.5)
    deadline = time.monotonic() + p["wait"]
    while True:
        found = observe(q)
        stale = [i["port"] for i in found if i["stale"]]
        crashed = crash_ends and any(i["crashed"] for i in found)
        if not stale or crashed or not p["wait"] or time.monotonic() >= deadline:
            return found, stale
        time.sleep(p["interval"])


def stale_message(p: dict, found: list[dict]) -> str:
    detail = "; ".join(f"{i['port']}: {', '.join(i['reasons'])}" for i in found if i["stale"])
    return f"not every instance answers with release {p['release']} after {p['wait']} s ({detail})"


def journal(p: dict, port: int | str, unit: str = "") -> str:
    cmd = ["journalctl", f"--unit={unit or p['unit']}@{port}.service", f"--lines={p['journal_lines']}", "--no-pager",
           "--output=cat"] + ([f"--grep={p['journal_filter']}"] if p["journal_filter"] else [])
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
