"""Kubernetes manifests (multi-document YAML) read the way the API server's YAML reader does.

PyYAML's safe loader, behind Ansible's `from_yaml_all`, follows YAML 1.1, where a bare `=` is
the "value" tag it cannot construct; Kubernetes reads YAML 1.2, where it is the string "=".
kube-prometheus-stack's CRDs carry such values (`enum: [=, =~, ...]` in AlertmanagerConfig), so
`from_yaml_all` fails on them. Used by the monitoring role to apply the chart's CRDs."""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's loader when PyYAML has it: the operator's CRDs are ~12 MB of YAML
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ManifestLoader(_Base):  # type: ignore[misc]
    pass


_ManifestLoader.add_constructor("tag:yaml.org,2002:value", _ManifestLoader.construct_yaml_str)


def manifests(text: str) -> list[Any]:
    """Every non-empty document in `text`."""
    return [doc for doc in yaml.load_all(text, Loader=_ManifestLoader) if doc]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"manifests": manifests}
