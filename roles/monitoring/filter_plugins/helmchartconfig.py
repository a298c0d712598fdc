"""The HelmChartConfig file for a k3s-bundled chart, with the role's values merged in.

k3s re-applies every file of its manifests folder at each start (its deploy controller, through
wrangler's apply), over what is in the API: values merged only into the API object are gone
after the next reboot. So the file is what the role changes: the user's own file when one holds
the HelmChartConfig (their other documents and values kept), else a file of the role's, which
starts from the values the API object has (one made with kubectl keeps them).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

HEADER = ("# Managed in part by Ansible (role monitoring): the values below are yours merged with\n"
          "# the role's. k3s applies this file at every start.\n")


class _Dumper(yaml.SafeDumper):
    """Text of several lines as a block (valuesContent stays readable YAML in the file)."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _merge(base: Any, ours: Any) -> Any:
    """ours over base, mappings merged key by key (as Ansible's combine(recursive=True))."""
    if isinstance(base, dict) and isinstance(ours, dict):
        merged = dict(base)
        for key, value in ours.items():
            merged[key] = _merge(base.get(key), value)
        return merged
    return ours


def _is_config(doc: Any, name: str, namespace: str) -> bool:
    if not isinstance(doc, dict) or doc.get("kind") != "HelmChartConfig":
        return False
    meta = doc.get("metadata") or {}
    return bool(meta.get("name") == name and meta.get("namespace", "kube-system") == namespace)


def k3s_helmchartconfig_file(files: list[dict[str, Any]], name: str, namespace: str,
                             default_path: str, api_values: str, ours: dict[str, Any]) -> dict[str, Any]:
    """``files``: slurp results of the manifests folder's YAML files. Returns the file to write
    (path, content), the merged valuesContent, and whether the file is the user's."""
    found = []
    for entry in files:
        path = entry.get("source") or entry.get("item")
        try:
            docs = list(yaml.safe_load_all(base64.b64decode(entry["content"])))
        except yaml.YAMLError as exc:
            raise AnsibleFilterError(f"{path} is not YAML, and k3s applies it at every start:"
                                     f" {exc}") from None
        found += [(path, docs, i) for i, doc in enumerate(docs) if _is_config(doc, name, namespace)]
    if len(found) > 1:
        paths = ", ".join(sorted({p for p, _, _ in found}))
        raise AnsibleFilterError(f"more than one HelmChartConfig {namespace}/{name} in k3s's manifests"
                                 f" ({paths}): k3s would apply each in turn; keep one")
    if found:
        path, docs, index = found[0]
        base = (docs[index].get("spec") or {}).get("valuesContent") or ""
    else:
        path, index, base = default_path, 0, api_values or ""
        docs = [{"apiVersion": "helm.cattle.io/v1", "kind": "HelmChartConfig",
                 "metadata": {"name": str(name), "namespace": str(namespace)}, "spec": {}}]
    try:
        current = yaml.safe_load(base) or {}
    except yaml.YAMLError as exc:
        raise AnsibleFilterError(f"the valuesContent of HelmChartConfig {namespace}/{name} is not YAML:"
                                 f" {exc}") from None
    # Ansible hands its own str and dict subclasses, which YAML's dumpers refuse: plain ones
    plain = json.loads(json.dumps(_merge(current, ours)))
    values = yaml.safe_dump(plain, sort_keys=True, default_flow_style=False)
    docs[index].setdefault("spec", {})["valuesContent"] = values
    body = "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
                        for d in docs if d is not None)
    return {"path": str(path), "content": HEADER + "---\n" + body, "values_content": values,
            "user_file": bool(found)}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"k3s_helmchartconfig_file": k3s_helmchartconfig_file}
