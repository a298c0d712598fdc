"""k3s_metrics against a temporary k3s root: the drop-in, the user's files, restarts, bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "root"
DROPIN = ROOT / "etc/rancher/k3s/config.yaml.d/90-k3s-metrics.yaml"
USER_CONFIG = ROOT / "etc/rancher/k3s/config.yaml"


def test_dropin_merges_the_users_arguments_and_replaces_the_conflicting_one(host):
    dropin = host.file(str(DROPIN))
    assert dropin.exists
    assert dropin.mode == 0o600
    config = yaml.safe_load(dropin.content_string)
    assert config == {
        "kube-controller-manager-arg": ["terminated-pod-gc-threshold=10", "bind-address=0.0.0.0"],
        "kube-scheduler-arg": ["bind-address=0.0.0.0"],
        "kube-proxy-arg": ["v=2", "metrics-bind-address=0.0.0.0"],
    }  # no etcd-expose-metrics: nothing would scrape it (platform_etcd_metrics: false)


def test_users_files_are_untouched(host):
    user = yaml.safe_load(host.file(str(USER_CONFIG)).content_string)
    assert user["kube-controller-manager-arg"] == ["bind-address=127.0.0.1", "terminated-pod-gc-threshold=10"]
    assert user["tls-san"] == ["k3s.example.org", "192.168.1.10"]
    assert host.file(str(USER_CONFIG)).content_string.startswith("# the user's own file")
    assert yaml.safe_load(host.file(str(DROPIN.parent / "50-user.yaml")).content_string) == {
        "kube-proxy-arg+": ["v=2"],
        "node-label+": ["zone=home"],
    }


def test_k3s_restarted_once_across_converge_idempotence_and_check(host):
    # converge changed the drop-in (one restart); the idempotence and check runs changed nothing
    assert host.file(str(ROOT / "restarts")).content_string.splitlines() == ["restarted"]


def test_check_mode_after_converge_reports_no_change(check_mode_changes):
    assert "changed=0" in check_mode_changes()


def test_check_mode_reports_a_pending_change_without_making_it(converge):
    before = DROPIN.read_bytes()
    DROPIN.unlink()
    try:
        result = converge("--check", "--diff")
        assert result.returncode == 0, result.stdout[-3000:]
        assert "changed=0" not in result.stdout
        assert "bind-address=0.0.0.0" in result.stdout  # the diff shows what would be written
        assert not DROPIN.exists()
        assert (ROOT / "restarts").read_text().splitlines() == ["restarted"]
    finally:
        DROPIN.write_bytes(before)


def test_firewall_rules_allow_only_the_given_networks(host):
    rules = host.file(str(ROOT / "etc/nftables.d/k3s-metrics.nft")).content_string
    # the user's cluster-cidr (prepare.yml) with the listed 10.52.7.0/24 merged into it
    assert "elements = { 10.52.0.0/16, 192.168.1.10/32 }" in rules
    assert "elements = { fd00::/8 }" in rules
    # 9100: node-exporter on the host network, which no NetworkPolicy covers
    assert "tcp dport { 10249, 10257, 10259, 2381, 9100 } drop" in rules
    assert host.file(str(ROOT / "nft-loads")).content_string.splitlines() == ["loaded"]


def test_bad_cidr_is_rejected_before_any_change(host, converge):
    before = DROPIN.read_bytes()
    bad = '{"k3s_metrics_allowed_cidrs": ["10.0.0.0/33"], "k3s_metrics_bind_address": "127.0.0.2"}'
    result = converge("-e", bad)
    assert result.returncode != 0
    assert "not a network: 10.0.0.0/33" in result.stdout
    assert DROPIN.read_bytes() == before


def test_a_k3s_that_does_not_come_back_fails_with_the_reason(host, converge):
    before, restarts = DROPIN.read_bytes(), (ROOT / "restarts").read_bytes()
    try:
        result = converge(
            "-e",
            '{"k3s_metrics_bind_address": "127.0.0.1", "k3s_metrics_wait_ports": [1],'
            ' "k3s_metrics_wait_timeout": 2}',
        )
        assert result.returncode != 0
        assert "k3s did not come back after the restart" in result.stdout
        assert "port(s) 1 on 127.0.0.1 did not listen" in result.stdout
    finally:
        DROPIN.write_bytes(before)
        (ROOT / "restarts").write_bytes(restarts)


def test_a_metrics_port_on_loopback_only_fails_the_wait_on_the_hosts_address(host, converge):
    """k3s listens on 127.0.0.1 with or without the drop-in: only the host's address proves it."""
    before, restarts = DROPIN.read_bytes(), (ROOT / "restarts").read_bytes()
    with socket.socket() as loopback_only:
        loopback_only.bind(("127.0.0.1", 0))
        loopback_only.listen()
        port = loopback_only.getsockname()[1]
        facts = host.ansible("setup", "gather_subset=network")["ansible_facts"]
        address = facts["ansible_default_ipv4"]["address"]
        try:
            result = converge(
                "-e",
                json.dumps(
                    {
                        "platform_etcd_metrics": True,  # a changed drop-in: k3s restarts, the wait runs
                        "k3s_metrics_wait_host": "",
                        "k3s_metrics_wait_ports": [port],
                        "k3s_metrics_wait_timeout": 2,
                    }
                ),
            )
        finally:
            DROPIN.write_bytes(before)
            (ROOT / "restarts").write_bytes(restarts)
    assert result.returncode != 0
    assert f"port(s) {port} on {address} did not listen" in result.stdout


def test_kube_args_on_the_units_command_line_stop_the_role_before_any_change(converge):
    unit = ROOT / "etc/systemd/system/k3s.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    before = DROPIN.read_bytes()
    # as the installer writes INSTALL_K3S_EXEC="--kube-scheduler-arg=v=2"
    unit.write_text(
        "[Service]\nExecStart=/usr/local/bin/k3s \\\n    server \\\n\t'--kube-scheduler-arg=v=2' \\\n"
    )
    try:
        result = converge("-e", json.dumps({"k3s_metrics_bind_address": "127.0.0.1"}))
    finally:
        unit.unlink()
    assert result.returncode != 0
    assert "passes --kube-scheduler-arg on k3s's command line (INSTALL_K3S_EXEC)" in result.stdout
    assert DROPIN.read_bytes() == before


def test_a_host_without_a_default_route_stops_before_any_change_naming_the_setting(converge):
    """Its own address then is unknown; the run happens in a network namespace of its own, which
    has no route at all."""
    before = DROPIN.read_bytes()
    # the role's default bind address (every interface) and no wait host given
    wanted = {"k3s_metrics_wait_host": "", "platform_etcd_metrics": True}
    result = converge("-e", json.dumps(wanted), isolated_network=True)
    assert result.returncode != 0
    assert "this host has no default route" in result.stdout and "k3s_metrics_wait_host" in result.stdout
    assert DROPIN.read_bytes() == before


NODE, PEER = "tpk-node", "tpk-peer"  # network namespaces: this host and one next to it
LISTEN = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    server = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    sel.register(server, selectors.EVENT_READ)
print("listening", flush=True)
while True:
    for key, _ in sel.select():
        key.fileobj.accept()[0].close()
"""
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1,
                             source_address=(sys.argv[3], 0)).close()
except OSError:
    sys.exit(1)
"""


def _ip(*args: str, ns: str | None = None, check: bool = True) -> None:
    subprocess.run([*(["ip", "netns", "exec", ns] if ns else []), "ip", *args], check=check,
                   capture_output=True)


@pytest.fixture
def two_hosts():
    """This host (the node, with the role's nftables rules) and a peer on its LAN, each in a
    network namespace of its own, joined by a veth pair. The peer holds a pod address of the
    user's cluster-cidr, the listed LAN host's address and an unlisted one."""
    for ns in (NODE, PEER):
        _ip("netns", "del", ns, check=False)
        _ip("netns", "add", ns)
        _ip("link", "set", "lo", "up", ns=ns)
    _ip("link", "add", "tpk0", "netns", NODE, "type", "veth", "peer", "name", "tpk1", "netns", PEER)
    for ns, dev, addresses in ((NODE, "tpk0", ["192.168.1.1/24", "10.52.0.1/16", "fd00::1/64"]),
                               (PEER, "tpk1", ["192.168.1.10/24", "192.168.1.77/24",
                                               "10.52.3.4/16", "fd00::10/64", "2001:db8::10/64"])):
        for address in addresses:
            _ip("addr", "add", address, "dev", dev, *(["nodad"] if ":" in address else []), ns=ns)
        _ip("link", "set", dev, "up", ns=ns)
    _ip("route", "add", "2001:db8::/64", "dev", "tpk0", ns=NODE)
    yield
    for ns in (NODE, PEER):
        _ip("netns", "del", ns, check=False)


def test_the_rules_let_prometheus_pods_and_listed_hosts_in_and_no_one_else(two_hosts):
    """Real nftables, the rules file the role wrote: a connection from a pod address (the user's
    cluster-cidr) is accepted, one from the listed LAN host too, one from an unlisted LAN
    address dropped; ports other than the metrics ports stay open."""
    rules = ROOT / "etc/nftables.d/k3s-metrics.nft"
    subprocess.run(["ip", "netns", "exec", NODE, "nft", "-f", str(rules)], check=True)
    listener = subprocess.Popen(["ip", "netns", "exec", NODE, sys.executable, "-c", LISTEN,
                                 "9100", "10249", "10257", "8080"], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "listening"

        def reaches(source: str, port: int, target: str = "192.168.1.1") -> bool:
            done = subprocess.run(["ip", "netns", "exec", PEER, sys.executable, "-c", CONNECT,
                                   target, str(port), source], timeout=10)
            return done.returncode == 0

        assert reaches("10.52.3.4", 9100) and reaches("10.52.3.4", 10249)  # Prometheus's pod
        assert reaches("192.168.1.10", 10257)  # the listed host
        assert not reaches("192.168.1.77", 9100) and not reaches("192.168.1.77", 10249)
        assert reaches("192.168.1.77", 8080)  # only the metrics ports are closed
        assert reaches("fd00::10", 9100, "fd00::1")  # fd00::/8 is listed
        assert not reaches("2001:db8::10", 9100, "fd00::1")  # not listed
    finally:
        listener.kill()
        listener.wait()
