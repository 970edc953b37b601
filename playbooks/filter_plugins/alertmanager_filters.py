"""Alertmanager's configuration from the role's variables, and the checks of those variables
(unit-tested in tests/test_alertmanager.py; amtool checks the result on the host)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
_URL = re.compile(r"^https?://\S+$")


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def problems(receivers: Sequence[Mapping[str, Any]], default_receiver: str, routes: Sequence[Mapping[str, Any]],
             smarthost: str, smtp_from: str) -> list[str]:
    """What is wrong with the receivers, routes and smarthost, each naming its variable; [] when
    nothing is. Addresses and URLs are never repeated (webhook URLs may hold tokens)."""
    found: list[str] = []
    names: list[str] = []
    emails = False
    if not receivers:
        found.append("alertmanager_receivers is empty: give at least one receiver (a name and email_to or webhook_urls)")
    for i, receiver in enumerate(receivers):
        where = f"alertmanager_receivers[{i}]"
        if not isinstance(receiver, Mapping):
            found.append(f"{where} must be a mapping with name, email_to and/or webhook_urls")
            continue
        name = str(receiver.get("name") or "")
        if not name:
            found.append(f"{where} has no name")
        elif name in names:
            found.append(f"{where} repeats the name {name!r}")
        names.append(name)
        unknown = sorted(set(receiver) - {"name", "email_to", "webhook_urls"})
        if unknown:
            found.append(f"{where} ({name}) has unknown keys {unknown} (name, email_to, webhook_urls)")
        email_to = _list(receiver.get("email_to"))
        webhooks = _list(receiver.get("webhook_urls"))
        if not email_to and not webhooks:
            found.append(f"{where} ({name}) has no address: give it email_to or webhook_urls")
        bad = [j for j, a in enumerate(email_to) if not _EMAIL.match(str(a))]
        if bad:
            found.append(f"{where} ({name}) email_to entries {bad} are not email addresses")
        bad = [j for j, u in enumerate(webhooks) if not _URL.match(str(u))]
        if bad:
            found.append(f"{where} ({name}) webhook_urls entries {bad} are not http(s) URLs")
        emails = emails or bool(email_to)
    if emails:
        match = _HOST_PORT.match(str(smarthost or ""))
        if not match or not 1 <= int(match.group(2)) <= 65535:
            found.append("alertmanager_smtp_smarthost must be host:port (with the port) for the email receivers, "
                         f"is {smarthost!r}")
        if not _EMAIL.match(str(smtp_from or "")):
            found.append(f"alertmanager_smtp_from must be an email address for the email receivers, is {smtp_from!r}")
    if default_receiver not in names:
        found.append(f"alertmanager_default_receiver {default_receiver!r} is none of alertmanager_receivers' names {names}")
    for i, route in enumerate(routes):
        where = f"alertmanager_routes[{i}]"
        if not isinstance(route, Mapping):
            found.append(f"{where} must be a mapping with receiver and matchers")
            continue
        if route.get("receiver") not in names:
            found.append(f"{where} names receiver {route.get('receiver')!r}, none of {names}")
        if not _list(route.get("matchers")):
            found.append(f"{where} has no matchers (such as severity=\"critical\")")
        unknown = sorted(set(route) - {"receiver", "matchers", "continue"})
        if unknown:
            found.append(f"{where} has unknown keys {unknown} (receiver, matchers, continue)")
    return found


def config(receivers: Sequence[Mapping[str, Any]], default_receiver: str, routes: Sequence[Mapping[str, Any]],
           grouping: Mapping[str, Any], smtp: Mapping[str, Any], inhibit_rules: Sequence[Mapping[str, Any]]) -> dict:
    """alertmanager.yml as data: every receiver told of resolved alerts too; the SMTP settings
    only when some receiver sends email, its password only when one is set.

    grouping: group_by, group_wait, group_interval, repeat_interval, resolve_timeout.
    smtp: smarthost, from, auth_username, auth_password, require_tls.
    """
    out_receivers = []
    for receiver in receivers:
        entry: dict[str, Any] = {"name": str(receiver["name"])}
        emails = _list(receiver.get("email_to"))
        hooks = _list(receiver.get("webhook_urls"))
        if emails:
            entry["email_configs"] = [{"to": str(a), "send_resolved": True} for a in emails]
        if hooks:
            entry["webhook_configs"] = [{"url": str(u), "send_resolved": True} for u in hooks]
        out_receivers.append(entry)
    glob: dict[str, Any] = {"resolve_timeout": str(grouping["resolve_timeout"])}
    if any("email_configs" in r for r in out_receivers):
        glob["smtp_smarthost"] = str(smtp["smarthost"])
        glob["smtp_from"] = str(smtp["from"])
        glob["smtp_require_tls"] = bool(smtp["require_tls"])
        if smtp.get("auth_username"):
            glob["smtp_auth_username"] = str(smtp["auth_username"])
            glob["smtp_auth_password"] = str(smtp.get("auth_password") or "")
    route: dict[str, Any] = {
        "receiver": str(default_receiver),
        "group_by": [str(label) for label in grouping["group_by"]],
        "group_wait": str(grouping["group_wait"]),
        "group_interval": str(grouping["group_interval"]),
        "repeat_interval": str(grouping["repeat_interval"]),
    }
    if routes:
        route["routes"] = [{"receiver": str(r["receiver"]), "matchers": [str(m) for m in _list(r["matchers"])],
                            **({"continue": True} if r.get("continue") else {})} for r in routes]
    return {"global": glob, "route": route, "inhibit_rules": [dict(r) for r in inhibit_rules],
            "receivers": out_receivers}


class FilterModule:
    """Filters of the alertmanager role."""

    def filters(self) -> dict[str, object]:
        return {"alertmanager_problems": problems, "alertmanager_config": config}
