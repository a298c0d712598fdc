"""Merge the metrics arguments into k3s's effective configuration without clobbering it."""

from __future__ import annotations

from typing import Any


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(item) for item in value]
    return [str(value)]


def _flag_name(arg: str) -> str:
    return arg.lstrip("-").split("=", 1)[0]


def k3s_effective_config(documents: list[Any]) -> dict[str, Any]:
    """Apply k3s's own rules to config.yaml followed by its drop-ins, in order:
    a plain key replaces the value so far, a key ending in `+` appends to it."""
    effective: dict[str, Any] = {}
    for document in documents:
        if not isinstance(document, dict):
            continue
        for key, value in document.items():
            if key.endswith("+"):
                base = key[:-1]
                effective[base] = _as_list(effective.get(base)) + _as_list(value)
            else:
                effective[key] = value
    return effective


def k3s_merge_args(effective: dict[str, Any], wanted: dict[str, list[str]]) -> dict[str, list[str]]:
    """For each `*-arg` key: keep every argument the user has, drop the ones that set a flag we
    set (a conflicting value is replaced, never doubled), then append ours."""
    merged: dict[str, list[str]] = {}
    for key, ours in wanted.items():
        names = {_flag_name(arg) for arg in ours}
        kept = [arg for arg in _as_list(effective.get(key)) if _flag_name(arg) not in names]
        merged[key] = kept + list(ours)
    return merged


# k3s's own default when the configuration names no cluster-cidr (k3s server --help)
K3S_DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"


def k3s_pod_cidrs(effective: dict[str, Any]) -> list[str]:
    """The cluster's pod networks, from which Prometheus scrapes the node: k3s's cluster-cidr
    (a comma-separated string, "10.42.0.0/16,2001:cafe:42::/56" when dual-stack, or a list),
    else k3s's default."""
    value = effective.get("cluster-cidr") or K3S_DEFAULT_CLUSTER_CIDR
    parts = [p for item in _as_list(value) for p in str(item).split(",")]
    return [p.strip() for p in parts if p.strip()]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"k3s_effective_config": k3s_effective_config, "k3s_merge_args": k3s_merge_args,
                "k3s_pod_cidrs": k3s_pod_cidrs}
