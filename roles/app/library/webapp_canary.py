#!/usr/bin/python
"""Ansible module: the first batch of a deploy judged by its metrics (a canary analysis)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: webapp_canary
short_description: Judge a new release by what its first batch answered, against the previous release
description:
  - Waits I(seconds) plus one scrape interval (I(scrape_interval)) while the first batch serves
    real traffic, then asks Prometheus (I(prometheus)) for the answers of the instances on
    I(release) and of those still on any other release of I(env) over that window, from the
    runner's request metrics (C(flask_http_request_total), C(flask_http_request_duration_seconds),
    labelled with the release that answered; the health path and C(/metrics) left out).
  - Passes when the release's error ratio (5xx over all answers) exceeds the other instances' by
    at most I(max_error_ratio), and its I(quantile) latency is at most I(max_latency_ratio) times
    theirs. With no other instance (a first batch of every host) the error ratio alone is
    judged, against I(max_error_ratio).
  - Fewer than I(min_requests) answers of the release in the window is no verdict: the module
    passes or fails as I(low_traffic) says, and says so.
  - Prometheus unreachable, or answering an error, is a failed verdict, never a pass.
options:
  prometheus: {description: Prometheus's base URL., type: str, required: true}
  env: {description: The env label of the app's metrics., type: str, required: true}
  release: {description: The release the first batch serves., type: str, required: true}
  health_path: {description: The app's health path (left out of the verdict)., type: str, default: /health}
  seconds: {description: The window the first batch serves before the verdict., type: float, required: true}
  scrape_interval: {description: "Prometheus's scrape interval, a Prometheus duration (15s, 1m), waited on top of the window.", type: str, default: 15s}
  max_error_ratio: {description: How much higher the release's error ratio may be than the others'., type: float, default: 0.05}
  max_latency_ratio: {description: How many times the others' latency quantile the release's may be., type: float, default: 1.5}
  quantile: {description: The latency quantile compared., type: float, default: 0.9}
  min_requests: {description: Answers of the release needed for a verdict., type: int, default: 50}
  low_traffic: {description: "What too few answers means: continue or stop.", type: str, default: continue, choices: [continue, stop]}
  timeout: {description: Seconds one Prometheus query may take., type: float, default: 10}
"""

RETURN = r"""
verdict:
  description: pass, fail or no-traffic.
  type: str
  returned: always
numbers:
  description: The release's and the others' requests, error ratios and latency quantiles in the window.
  type: dict
  returned: always
reasons:
  description: What failed (or why there was no verdict), each naming its metric and bound.
  type: list
  returned: always
"""

import json
import math
import re
import time
import urllib.parse

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stack_http import get

REQUESTS = "flask_http_request_total"
BUCKETS = "flask_http_request_duration_seconds_bucket"


def _label(value: str) -> str:
    """A PromQL string literal."""
    return json.dumps(str(value))


def selector(p: dict, release_match: str, extra: str = "") -> str:
    """The label matchers of the app's answers in the verdict: env, the release (= or !=), not the
    health path nor /metrics, and `extra`."""
    return ("{" + f'job="app",env={_label(p["env"])},release{release_match}{_label(p["release"])},'
            f'route!="/metrics",route!={_label(p["health_path"])}' + (f",{extra}" if extra else "") + "}")


def queries(p: dict, window: float) -> dict[str, str]:
    """The PromQL of each number, over the last `window` seconds."""
    w = f"{max(1, math.ceil(window))}s"
    found = {}
    for who, match in (("release", "="), ("others", "!=")):
        found[f"{who}_requests"] = f"sum(increase({REQUESTS}{selector(p, match)}[{w}]))"
        found[f"{who}_errors"] = f'sum(increase({REQUESTS}{selector(p, match, "status=~" + _label("5.."))}[{w}]))'
        found[f"{who}_latency"] = (f"histogram_quantile({p['quantile']}, sum by (le) "
                                   f"(rate({BUCKETS}{selector(p, match)}[{w}])))")
    return found


def ratio(errors: float | None, requests: float | None) -> float | None:
    return None if not requests else (errors or 0.0) / requests


def verdict(numbers: dict[str, float | None], p: dict) -> tuple[str, list[str]]:
    """pass, fail or no-traffic, and the reasons (each naming its metric and bound)."""
    requests = numbers.get("release_requests") or 0.0
    if requests < p["min_requests"]:
        return "no-traffic", [f"the release answered {requests:.0f} requests in the window, fewer than "
                              f"app_canary_min_requests ({p['min_requests']}): no verdict"]
    reasons = []
    mine = ratio(numbers.get("release_errors"), requests) or 0.0
    theirs = ratio(numbers.get("others_errors"), numbers.get("others_requests"))
    allowed = (theirs or 0.0) + p["max_error_ratio"]
    if mine > allowed:
        reasons.append(f"error ratio (5xx/all, {REQUESTS}) {mine:.3f} on the release against "
                       f"{'%.3f' % theirs if theirs is not None else 'none'} on the others: above the bound "
                       f"{allowed:.3f} (app_canary_max_error_ratio {p['max_error_ratio']})")
    latency, before = numbers.get("release_latency"), numbers.get("others_latency")
    if latency is not None and before:
        if latency > before * p["max_latency_ratio"]:
            reasons.append(f"latency p{p['quantile'] * 100:g} ({BUCKETS}) {latency * 1000:.1f} ms on the release "
                           f"against {before * 1000:.1f} ms on the others: {latency / before:.2f} times, above "
                           f"app_canary_max_latency_ratio ({p['max_latency_ratio']})")
    return ("fail" if reasons else "pass"), reasons


def number(result: list[dict]) -> float | None:
    """The one value of an instant vector (None when empty or not a number)."""
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) or math.isinf(value) else value


def ask(p: dict, expr: str, at: float) -> float | None:
    """One instant query; a RuntimeError when Prometheus does not answer it."""
    url = p["prometheus"].rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
    got = get(url, p["timeout"])
    if got.error or got.status != 200:
        raise RuntimeError(f"Prometheus at {p['prometheus']} did not answer ({got.error or 'HTTP %d' % got.status})")
    try:
        body = json.loads(got.body)
    except ValueError:
        raise RuntimeError(f"Prometheus at {p['prometheus']} answered no JSON") from None
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus at {p['prometheus']} refused {expr}: {body.get('error', body)}")
    return number(body["data"]["result"])


def seconds(duration: str) -> float:
    """A Prometheus duration (15s, 1m, 500ms, 1h) in seconds; a ValueError for anything else."""
    found = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", str(duration).strip())
    if not found:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return float(found.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[found.group(2)]


def judge(p: dict, sleep=None, clock=None) -> dict:
    """Wait for the window, ask, decide: the module's result (without changed)."""
    window = p["seconds"] + seconds(p["scrape_interval"])
    (sleep or time.sleep)(window)
    at = (clock or time.time)()
    try:
        numbers = {name: ask(p, expr, at) for name, expr in queries(p, window).items()}
    except RuntimeError as err:
        return {"verdict": "fail", "numbers": {}, "reasons": [f"{err}: no verdict can pass without its metrics"]}
    result, reasons = verdict(numbers, p)
    if result == "no-traffic" and p["low_traffic"] == "stop":
        reasons.append("app_canary_low_traffic is stop: the deploy stops")
    elif result == "no-traffic":
        reasons.append("app_canary_low_traffic is continue: the deploy goes on")
    return {"verdict": result, "numbers": numbers, "reasons": reasons}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "prometheus": {"type": "str", "required": True},
            "env": {"type": "str", "required": True},
            "release": {"type": "str", "required": True},
            "health_path": {"type": "str", "default": "/health"},
            "seconds": {"type": "float", "required": True},
            "scrape_interval": {"type": "str", "default": "15s"},
            "max_error_ratio": {"type": "float", "default": 0.05},
            "max_latency_ratio": {"type": "float", "default": 1.5},
            "quantile": {"type": "float", "default": 0.9},
            "min_requests": {"type": "int", "default": 50},
            "low_traffic": {"type": "str", "default": "continue", "choices": ["continue", "stop"]},
            "timeout": {"type": "float", "default": 10},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        seconds(p["scrape_interval"])
    except ValueError as err:
        module.fail_json(msg=f"scrape_interval: {err}")
    if module.check_mode:
        module.exit_json(changed=False, verdict="skipped", numbers={}, reasons=["check mode: no canary"])
    result = judge(p)
    stops = result["verdict"] == "fail" or (result["verdict"] == "no-traffic" and p["low_traffic"] == "stop")
    if stops:
        module.fail_json(msg=f"Release {p['release']} failed its canary analysis after {p['seconds']:g} s: "
                             + "; ".join(result["reasons"]), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
