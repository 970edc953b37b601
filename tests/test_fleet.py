"""Unit tests of the fleet's facts (playbooks/filter_plugins/stack_filters.py): what the plays
compute from the inventory, on a small inventory written here."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.conftest import ROOT
from stack_filters import (  # noqa: I001 (after tests.conftest, which puts the filters on the path)
    FilterModule, alertmanager_peers, alertmanagers, app_ports, batch_problems, batch_sizes, deploy_marker, firewall_rules,
    deploy_serial, floating_address, host_port, instances, marker_host, port_problems, probe_address,
    journald_units, loki_endpoint, port_clashes, probes, public_url, regex_literal, scrape_jobs, services, setting,
    upstreams,
)
import stack_filters

DEFAULTS = {
    "app_base_port": 8000, "app_instances": 2, "app_spare_port": 8100, "node_exporter_port": 9100,
    "nginx_listen_port": 80, "nginx_tls_port": 443, "nginx_tls_certificate": "", "nginx_stub_status_port": 8080,
    "nginx_exporter_enabled": True, "nginx_exporter_port": 9113, "prometheus_port": 9090, "grafana_port": 3000,
    "loki_http_port": 3100, "loki_gateway_push_username": "fluent-bit", "fluent_bit_http_port": 2020,
    "alertmanager_port": 9093, "alertmanager_cluster_port": 9094, "blackbox_exporter_port": 9115,
    "blackbox_exporter_listen_address": "127.0.0.1", "blackbox_exporter_app_module": "webapp",
}


def fleet(**overrides):
    """Two load balancers, two app hosts, one monitoring host; overrides: host -> variables."""
    groups = {"all": ["lb1", "lb2", "app1", "app2", "mon1"], "ungrouped": [], "lb": ["lb1", "lb2"],
              "app": ["app1", "app2"], "monitoring": ["mon1"]}
    hostvars = {h: {"internal_address": f"192.0.2.{11 + i}"} for i, h in enumerate(groups["all"])}
    for host, values in overrides.items():
        hostvars[host].update(values)
    return hostvars, groups


def test_app_ports_counts_from_the_base_port():
    assert app_ports(8000, 2) == [8000, 8001]
    assert app_ports("9000", "1") == [9000]
    assert app_ports(8000, 0) == []
    with pytest.raises(ValueError, match="app_instances must not be negative"):
        app_ports(8000, -1)


def test_a_setting_is_the_inventorys_else_the_roles_default():
    assert setting({"prometheus_port": 9091}, "prometheus_port", DEFAULTS) == 9091
    assert setting({}, "prometheus_port", DEFAULTS) == 9090
    with pytest.raises(KeyError, match="nothing_port is neither set in the inventory nor a default of a role"):
        setting({}, "nothing_port", DEFAULTS)


def test_the_defaults_are_the_roles_own():
    """Read from roles/*/defaults/main.yml, the one place a default port is written."""
    found = {}
    for path in (ROOT / "roles").glob("*/defaults/main.yml"):
        found.update(yaml.safe_load(path.read_text()) or {})
    assert stack_filters.role_defaults() == found and found["loki_http_port"] == setting({}, "loki_http_port")


def test_instances_and_upstreams_cover_every_app_host_in_inventory_order():
    hostvars, groups = fleet(app2={"app_instances": 3, "app_base_port": 9000})
    found = instances(hostvars, groups, DEFAULTS)
    assert [(i["host"], i["port"]) for i in found] == [
        ("app1", 8000), ("app1", 8001), ("app2", 9000), ("app2", 9001), ("app2", 9002)]
    assert upstreams(hostvars, groups, DEFAULTS)[:3] == ["192.0.2.13:8000", "192.0.2.13:8001", "192.0.2.14:9000"]


def test_an_ipv6_upstream_is_bracketed():
    hostvars, groups = fleet(app1={"internal_address": "2001:db8::13"})
    assert upstreams(hostvars, groups, DEFAULTS)[0] == "[2001:db8::13]:8000"


def test_a_fleet_without_app_hosts_has_no_upstream():
    hostvars, groups = fleet()
    groups["app"] = []
    assert upstreams(hostvars, groups, DEFAULTS) == []
    del groups["app"]
    assert instances(hostvars, groups, DEFAULTS) == []


def test_floating_address_with_two_load_balancers_or_a_given_address():
    hostvars, groups = fleet()
    assert floating_address(hostvars["lb1"], groups)
    groups["lb"] = ["lb1"]
    assert not floating_address(hostvars["lb1"], groups)
    assert floating_address({"keepalived_virtual_address": "192.0.2.10"}, groups)


def names(table):
    return [s["name"] for s in table]


def test_services_of_each_kind_of_host():
    hostvars, groups = fleet()
    assert names(services(hostvars, groups, "app1", DEFAULTS)) == [
        "node_exporter", "fluent_bit", "app instance 8000", "app instance 8001", "app pre-check"]
    assert names(services(hostvars, groups, "lb1", DEFAULTS)) == [
        "node_exporter", "fluent_bit", "nginx http", "vrrp", "nginx stub_status", "nginx exporter"]
    assert names(services(hostvars, groups, "mon1", DEFAULTS)) == ["node_exporter", "fluent_bit", "prometheus", "grafana",
                                                                   "loki", "alertmanager", "blackbox exporter"]
    assert services(hostvars, groups, "app1", DEFAULTS)[1] == {"name": "fluent_bit", "port": 2020, "from": ["monitoring"]}
    mon = {s["name"]: s for s in services(hostvars, groups, "mon1", DEFAULTS)}
    assert mon["loki"] == {"name": "loki", "port": 3100, "from": ["all", "admin"]}
    assert mon["alertmanager"] == {"name": "alertmanager", "port": 9093, "from": ["admin", "monitoring"]}
    # The prober listens on 127.0.0.1 only: in the table for the port-clash check, in no firewall rule.
    assert mon["blackbox exporter"] == {"name": "blackbox exporter", "port": 9115, "from": []}


def test_services_follow_the_inventorys_switches():
    hostvars, groups = fleet(lb1={"nginx_tls_certificate": "/etc/ssl/lb.pem", "nginx_exporter_enabled": False},
                             mon1={"grafana_enabled": "false", "loki_enabled": False, "fluent_bit_enabled": "false",
                                   "alertmanager_enabled": "no", "blackbox_exporter_enabled": False})
    groups["lb"] = ["lb1"]
    assert names(services(hostvars, groups, "lb1", DEFAULTS)) == [
        "node_exporter", "fluent_bit", "nginx http", "nginx https", "nginx stub_status"]
    assert names(services(hostvars, groups, "mon1", DEFAULTS)) == ["node_exporter", "prometheus"]


def test_port_clashes_name_every_service_of_the_port():
    hostvars, groups = fleet(lb1={"nginx_exporter_port": 9100}, app1={"app_spare_port": 8001})
    assert port_clashes(services(hostvars, groups, "lb1", DEFAULTS)) == ["9100 (node_exporter, nginx exporter)"]
    assert port_clashes(services(hostvars, groups, "app1", DEFAULTS)) == ["8001 (app instance 8001, app pre-check)"]
    assert port_clashes(services(hostvars, groups, "mon1", DEFAULTS)) == []
    assert port_clashes([{"name": "a", "port": 1}, {"name": "b", "port": "1"}, {"name": "vrrp", "protocol": "vrrp"},
                         {"name": "c", "port": 2}, {"name": "d", "port": 2}]) == ["1 (a, b)", "2 (c, d)"]


def test_firewall_rules_turn_sources_into_addresses():
    hostvars, groups = fleet()
    table = services(hostvars, groups, "app1", DEFAULTS)
    rules = firewall_rules(table, hostvars, groups, ["198.51.100.0/24"])
    assert [r["name"] for r in rules] == ["node_exporter", "fluent_bit", "app instance 8000", "app instance 8001"]  # pre-check: loopback only
    assert rules[2] == {"name": "app instance 8000", "protocol": "tcp", "port": 8000, "from_any": False,
                        "sources": ["192.0.2.11", "192.0.2.12", "192.0.2.15"]}
    mon = {r["name"]: r for r in firewall_rules(services(hostvars, groups, "mon1", DEFAULTS), hostvars, groups,
                                                 ["198.51.100.0/24"])}
    assert mon["prometheus"]["sources"] == ["198.51.100.0/24", "192.0.2.15"]
    assert mon["grafana"]["sources"] == ["198.51.100.0/24"]
    assert mon["loki"]["sources"] == [f"192.0.2.{n}" for n in range(11, 16)] + ["198.51.100.0/24"]
    lb = {r["name"]: r for r in firewall_rules(services(hostvars, groups, "lb1", DEFAULTS), hostvars, groups)}
    assert lb["nginx http"]["from_any"] and lb["nginx http"]["sources"] == []
    assert lb["vrrp"] == {"name": "vrrp", "protocol": "vrrp", "port": 0, "from_any": False,
                          "sources": ["192.0.2.11", "192.0.2.12"]}


def test_a_service_nobody_may_reach_gets_no_rule_and_sources_are_unique():
    hostvars, groups = fleet()
    assert firewall_rules([{"name": "grafana", "port": 3000, "from": ["admin"]}], hostvars, groups, []) == []
    both = firewall_rules([{"name": "x", "port": 1, "from": ["lb", "lb"]}], hostvars, groups)
    assert both[0]["sources"] == ["192.0.2.11", "192.0.2.12"]


def test_scrape_jobs_label_every_target():
    hostvars, groups = fleet(lb2={"nginx_exporter_enabled": False, "fluent_bit_enabled": False}, app2={"app_instances": 1})
    found = scrape_jobs(hostvars, groups, "lab", DEFAULTS)
    jobs = {j["job_name"]: j["targets"] for j in found}
    assert list(jobs) == ["node", "app", "nginx", "prometheus", "fluent_bit", "loki", "alertmanager", "probe_public",
                          "probe_lb"]
    assert [t["labels"]["instance"] for t in jobs["fluent_bit"]] == ["app1:2020", "app2:2020", "lb1:2020", "mon1:2020"]
    assert jobs["loki"] == [{"address": "192.0.2.15:3100",
                             "labels": {"env": "lab", "group": "monitoring", "host": "mon1", "instance": "mon1:3100"}}]
    paths = {j["job_name"]: j.get("metrics_path") for j in found}
    assert paths["fluent_bit"] == "/api/v2/metrics/prometheus" and paths["node"] is None
    assert [t["labels"]["host"] for t in jobs["node"]] == ["app1", "app2", "lb1", "lb2", "mon1"]
    assert jobs["node"][0] == {"address": "192.0.2.13:9100",
                               "labels": {"env": "lab", "group": "app", "host": "app1", "instance": "app1:9100"}}
    assert [t["address"] for t in jobs["app"]] == ["192.0.2.13:8000", "192.0.2.13:8001", "192.0.2.14:8000"]
    assert [t["labels"]["instance"] for t in jobs["nginx"]] == ["lb1:9113"]
    assert jobs["prometheus"][0]["labels"] == {"env": "lab", "group": "monitoring", "host": "mon1", "instance": "mon1:9090"}


def test_scrape_jobs_leave_out_jobs_without_targets():
    hostvars, groups = fleet()
    groups = {**groups, "lb": [], "all": ["app1", "app2", "mon1"]}
    for host in ("app1", "app2", "mon1"):
        hostvars[host]["fluent_bit_enabled"] = False
    hostvars["mon1"]["loki_enabled"] = "no"
    hostvars["mon1"]["alertmanager_enabled"] = "no"
    hostvars["mon1"]["blackbox_exporter_enabled"] = "no"
    assert [j["job_name"] for j in scrape_jobs(hostvars, groups, "lab", DEFAULTS)] == ["node", "app", "prometheus"]


def test_port_clashes_are_per_protocol():
    # Alertmanager's gossip uses one port over TCP and UDP: no clash; two TCP services on it are one.
    assert port_clashes([{"name": "a tcp", "port": 9094}, {"name": "a udp", "port": 9094, "protocol": "udp"}]) == []
    assert port_clashes([{"name": "a", "port": 9, "protocol": "udp"}, {"name": "b", "port": 9, "protocol": "udp"}]) == [
        "9/udp (a, b)"]


def test_alertmanagers_gossip_only_with_more_than_one_monitoring_host():
    hostvars, groups = fleet()
    assert alertmanagers(hostvars, groups, DEFAULTS) == ["192.0.2.15:9093"]
    assert alertmanager_peers(hostvars, groups, "mon1", DEFAULTS) == []
    assert "alertmanager cluster tcp" not in names(services(hostvars, groups, "mon1", DEFAULTS))
    hostvars["mon2"] = {"internal_address": "192.0.2.16"}
    groups = {**groups, "all": [*groups["all"], "mon2"], "monitoring": ["mon1", "mon2"]}
    assert alertmanagers(hostvars, groups, DEFAULTS) == ["192.0.2.15:9093", "192.0.2.16:9093"]
    assert alertmanager_peers(hostvars, groups, "mon1", DEFAULTS) == ["192.0.2.16:9094"]
    gossip = [s for s in services(hostvars, groups, "mon1", DEFAULTS) if s["name"].startswith("alertmanager cluster")]
    assert gossip == [{"name": "alertmanager cluster tcp", "port": 9094, "protocol": "tcp", "from": ["monitoring"]},
                      {"name": "alertmanager cluster udp", "port": 9094, "protocol": "udp", "from": ["monitoring"]}]
    hostvars["mon2"]["alertmanager_enabled"] = False
    assert alertmanagers(hostvars, groups, DEFAULTS) == ["192.0.2.15:9093"]


def test_the_public_url_is_the_inventorys_else_the_floating_address():
    hostvars, groups = fleet(lb1={"keepalived_virtual_address": "192.0.2.10"})
    assert public_url(hostvars, groups, DEFAULTS) == "http://192.0.2.10/"
    hostvars["lb1"]["nginx_tls_certificate"] = "/etc/ssl/lb.pem"
    assert public_url(hostvars, groups, DEFAULTS) == "https://192.0.2.10/"
    hostvars["lb1"]["nginx_tls_port"] = 8443
    assert public_url(hostvars, groups, DEFAULTS) == "https://192.0.2.10:8443/"
    hostvars["lb1"]["public_url"] = "https://www.example.invalid/"
    assert public_url(hostvars, groups, DEFAULTS) == "https://www.example.invalid/"
    # One load balancer without a floating address: its own address.
    hostvars, groups = fleet()
    groups["lb"] = ["lb1"]
    assert public_url(hostvars, groups, DEFAULTS) == "http://192.0.2.11/"
    with pytest.raises(ValueError, match="no load balancer"):
        public_url(hostvars, {**groups, "lb": []}, DEFAULTS)


def test_probes_cover_the_public_url_and_each_load_balancer_at_its_address():
    hostvars, groups = fleet(lb1={"keepalived_virtual_address": "192.0.2.10", "nginx_tls_certificate": "/x.pem",
                                  "nginx_tls_port": 8443})
    assert probes(hostvars, groups, DEFAULTS) == [
        {"job": "probe_public", "host": "public", "url": "https://192.0.2.10:8443/"},
        {"job": "probe_lb", "host": "lb1", "url": "https://192.0.2.11:8443/"},
        {"job": "probe_lb", "host": "lb2", "url": "https://192.0.2.12:8443/"},
    ]
    jobs = {j["job_name"]: j for j in scrape_jobs(hostvars, groups, "lab", DEFAULTS)}
    assert jobs["probe_public"]["metrics_path"] == "/probe"
    assert jobs["probe_public"]["targets"] == [{"address": "127.0.0.1:9115", "labels": {
        "env": "lab", "group": "lb", "host": "public", "instance": "https://192.0.2.10:8443/",
        "__param_target": "https://192.0.2.10:8443/", "__param_module": "webapp"}}]
    assert [t["labels"]["host"] for t in jobs["probe_lb"]["targets"]] == ["lb1", "lb2"]


def test_a_regex_literal_matches_the_text_only():
    for text in ["Hello, DevOps!", "a.b*c (d) [e] {f} ^g$ h|i \\ j?+", "Grüße"]:
        assert re.fullmatch(regex_literal(text), text)
    assert not re.fullmatch(regex_literal("a.b"), "axb")


def test_a_host_in_no_group_is_labelled_ungrouped():
    hostvars, groups = fleet()
    hostvars["extra"] = {"internal_address": "192.0.2.99"}
    groups = {**groups, "all": [*groups["all"], "extra"], "ungrouped": ["extra"]}
    node = next(j for j in scrape_jobs(hostvars, groups, "lab", DEFAULTS) if j["job_name"] == "node")
    assert [t["labels"]["group"] for t in node["targets"] if t["labels"]["host"] == "extra"] == ["ungrouped"]


def test_loki_is_the_first_monitoring_host():
    hostvars, groups = fleet(mon1={"loki_http_port": "3101"})
    assert loki_endpoint(hostvars, groups, DEFAULTS) == {"host": "192.0.2.15", "port": 3101, "user": "fluent-bit"}
    hostvars, groups = fleet(mon1={"loki_gateway_push_username": "shipper"})
    assert loki_endpoint(hostvars, groups, DEFAULTS)["user"] == "shipper"
    with pytest.raises(ValueError, match="no monitoring host"):
        loki_endpoint(hostvars, {**groups, "monitoring": []}, DEFAULTS)


def test_journald_units_only_on_app_hosts():
    hostvars, groups = fleet(app1={"app_instances": 3})
    assert journald_units(hostvars, groups, "app1", DEFAULTS) == [
        "webapp@8000.service", "webapp@8001.service", "webapp@8002.service"]
    assert journald_units(hostvars, groups, "lb1", DEFAULTS) == []


def test_the_filters_are_registered_under_their_names():
    registered = FilterModule().filters()
    assert {"app_ports", "stack_setting", "stack_services", "stack_firewall_rules", "stack_port_clashes",
            "stack_scrape_jobs", "stack_upstreams", "stack_loki_endpoint", "stack_journald_units",
            "stack_addresses", "stack_instances", "stack_floating_address", "stack_public_url", "stack_probes",
            "stack_alertmanagers", "stack_alertmanager_peers", "stack_regex_literal", "stack_host_port",
            "stack_port_problems"} <= set(registered)


def test_a_deploy_marker_names_the_release_the_hosts_left_and_who_ran_it():
    # app1 switched; app2 failed before its switch began (what it planned counts).
    hostvars = {"app1": {"app_moving": {"from": "r1", "to": "r2"}}, "app2": {"app_moving": {"from": "r1", "to": "r2"}},
                "app3": {}}
    marker = deploy_marker(hostvars, ["app1", "app2", "app3"], "deploy", "ok", "alice")
    assert marker["changed"] is True
    assert marker["line"] == {"event": "deploy", "release": "r2", "from": "r1", "by": "alice", "result": "ok",
                              "hosts": ["app1", "app2"]}
    # One journal line: JSON has no raw newline.
    assert marker["message"] == json.dumps(marker["line"], sort_keys=True) and "\n" not in marker["message"]


def test_a_rollback_marker_reads_the_plan_and_a_run_that_moves_nothing_writes_none():
    hostvars = {"app1": {"app_moving": {"from": "r2", "to": "r1"}}, "app2": {"app_moving": {"from": "r1", "to": "r1"}}}
    marker = deploy_marker(hostvars, ["app1", "app2"], "rollback", "failed", "bob")
    assert marker["line"]["hosts"] == ["app1"] and marker["line"]["from"] == "r2" and marker["line"]["result"] == "failed"
    still = {"app1": {"app_moving": {"from": "r2", "to": "r2"}}}
    assert deploy_marker(still, ["app1"], "deploy", "ok", "bob")["changed"] is False


def test_hosts_that_disagree_are_listed_and_wrong_values_refused():
    hostvars = {"a": {"app_moving": {"from": "r1", "to": "r3"}}, "b": {"app_moving": {"from": "r2", "to": "r3"}}}
    assert deploy_marker(hostvars, ["a", "b"], "deploy", "ok", "x")["line"]["from"] == ["r1", "r2"]
    with pytest.raises(ValueError, match="a deploy or rollback that is ok or failed"):
        deploy_marker(hostvars, ["a"], "release", "ok", "x")



@pytest.mark.parametrize(("batches", "hosts", "sizes"), [
    ([1, "100%"], 2, [1, 1]),
    ([1, "100%"], 6, [1, 5]),
    ([1, "25%", "100%"], 8, [1, 2, 5]),
    (["25%"], 6, [1, 1, 1, 1, 1, 1]),
    (["50%"], 4, [2, 2]),
    ([2], 5, [2, 2, 1]),
    ([10, "100%"], 3, [3]),
])
def test_batch_sizes_follow_ansibles_serial(batches, hosts, sizes):
    assert batch_sizes(batches, hosts) == sizes


@pytest.mark.parametrize(("batches", "words"), [
    ([0, "100%"], "app_deploy_batches[0] must be a number of hosts"),
    ([1, "150%"], "app_deploy_batches[1]"),
    ([1, "half"], "is 'half'"),
    ([True], "app_deploy_batches[0]"),
    ([], "app_deploy_batches must be a list of at least one batch"),
    ("1", "app_deploy_batches must be a list"),
])
def test_wrong_batches_are_refused_naming_the_variable(batches, words):
    assert words in "; ".join(batch_problems(batches))
    if isinstance(batches, list) and batches:
        with pytest.raises(ValueError, match=r"app_deploy_batches"):
            batch_sizes(batches, 4)



def test_the_markers_go_to_the_first_monitoring_host():
    _, groups = fleet()
    assert marker_host({**groups, "monitoring": ["mon2", "mon1"]}) == "mon2"
    with pytest.raises(ValueError, match="no monitoring host"):
        marker_host({**groups, "monitoring": []})



def test_the_deploy_serial_is_the_first_app_hosts_batches_else_the_default():
    hostvars, groups = fleet(app1={"app_deploy_batches": [2, "50%"]})
    assert deploy_serial(hostvars, groups, {"app_deploy_batches": [1, "100%"]}) == [2, "50%"]
    assert deploy_serial({}, groups, {"app_deploy_batches": [1, "100%"]}) == [1, "100%"]
    assert deploy_serial({}, {}, {"app_deploy_batches": [1, "100%"]}) == [1, "100%"]
    assert deploy_serial({}, {}) == setting({}, "app_deploy_batches")


@pytest.mark.parametrize(("listen", "probe"), [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("", "127.0.0.1"),
                                               (None, "127.0.0.1"), ("10.0.0.4", "10.0.0.4"), ("127.0.0.1", "127.0.0.1")])
def test_a_service_on_every_address_is_probed_on_loopback(listen, probe):
    assert probe_address(listen) == probe


@pytest.mark.parametrize(("address", "port", "joined"), [
    ("10.0.0.1", 9100, "10.0.0.1:9100"), ("::1", 9100, "[::1]:9100"), ("2001:db8::13", "8000", "[2001:db8::13]:8000"),
    ("[::1]", 9100, "[::1]:9100"), ("lb1.example.invalid", 80, "lb1.example.invalid:80"), ("", 9090, ":9090"),
])
def test_host_port_brackets_ipv6_only(address, port, joined):
    assert host_port(address, port) == joined


def test_every_host_port_of_the_fleet_brackets_an_ipv6_address():
    """Scrape targets, Alertmanagers and their peers, upstreams and probes alike."""
    hostvars, groups = fleet(app1={"internal_address": "2001:db8::13"}, mon1={"internal_address": "2001:db8::15"},
                             lb1={"internal_address": "2001:db8::11"})
    hostvars["mon2"] = {"internal_address": "2001:db8::16"}
    groups = {**groups, "all": [*groups["all"], "mon2"], "monitoring": ["mon1", "mon2"]}
    targets = {t["address"] for job in scrape_jobs(hostvars, groups, "lab", DEFAULTS) for t in job["targets"]}
    assert {"[2001:db8::13]:8000", "[2001:db8::13]:9100", "[2001:db8::15]:9090", "[2001:db8::15]:9093",
            "192.0.2.12:9100"} <= targets
    assert not [t for t in targets if t.count(":") > 1 and not t.startswith("[")], targets
    assert alertmanagers(hostvars, groups, DEFAULTS) == ["[2001:db8::15]:9093", "[2001:db8::16]:9093"]
    assert alertmanager_peers(hostvars, groups, "mon1", DEFAULTS) == ["[2001:db8::16]:9094"]
    assert upstreams(hostvars, groups, DEFAULTS)[:2] == ["[2001:db8::13]:8000", "[2001:db8::13]:8001"]
    assert [p["url"] for p in probes(hostvars, groups, DEFAULTS)][1] == "http://[2001:db8::11]/"


def test_port_problems_name_each_variable_out_of_range():
    assert port_problems({"loki_http_port": 3100, "loki_grpc_port": "9096"}) == []
    assert port_problems({"a_port": 0, "b_port": 65536, "c_port": "eighty", "d_port": -1, "e_port": True,
                          "f_port": None, "g_port": 65535, "h_port": 1}) == [
        "a_port must be a port within 1-65535, is 0",
        "b_port must be a port within 1-65535, is 65536",
        "c_port must be a port within 1-65535, is 'eighty'",
        "d_port must be a port within 1-65535, is -1",
        "e_port must be a port within 1-65535, is True",
        "f_port must be a port within 1-65535, is None",
    ]
    assert port_problems({}) == []


def test_port_problems_take_a_lowest_port_and_a_list_of_services():
    assert port_problems({"app_spare_port": 80}, 1024) == ["app_spare_port must be a port within 1024-65535, is 80"]
    assert port_problems({"app_spare_port": 1024}, 1024) == []
    assert port_problems([{"name": "web", "port": 8080}, {"name": "bad", "port": 70000}, {"name": "none"}]) == [
        "the port of firewall_services entry 'bad' must be a port within 1-65535, is 70000",
        "the port of firewall_services entry 'none' must be a port within 1-65535, is None",
    ]
