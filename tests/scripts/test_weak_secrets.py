"""The weak_secrets filter every role's preflight uses: placeholders, length, variety, and never
a value in a reason."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("weak_secrets", ROOT / "plugins/filter/weak_secrets.py")
assert spec and spec.loader
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
weak_secrets = module.weak_secrets


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("change-me", "is still the placeholder from vault.yml.example"),
        ("CHANGE-ME-please-0123456789", "is still the placeholder from vault.yml.example"),
        ("short-pass", "is shorter than 12 characters"),
        ("abababababababab", "repeats fewer than 5 different characters"),
        ("0000000000000000", "repeats fewer than 5 different characters"),
    ],
)
def test_a_weak_secret_is_named_with_its_reason_and_not_shown(value, reason):
    assert weak_secrets({"vault_x": value}, 12) == [f"vault_x {reason}"]
    assert value not in " ".join(weak_secrets({"vault_x": value}, 12))


def test_strong_secrets_pass():
    assert weak_secrets({"a": "Zq3-vT9!kLm2#pW8", "b": "correct horse battery staple"}, 12) == []


def test_every_placeholder_of_the_vault_example_is_refused():
    example = yaml.safe_load((ROOT / "inventory/group_vars/all/vault.yml.example").read_text())
    secrets = {k: v for k, v in example.items() if "password" in k or "secret" in k or "token" in k}
    secrets |= {f"loki {u['username']}": u["password"] for u in example["vault_loki_basic_auth_users"]}
    assert len(weak_secrets(secrets, 8)) == len(secrets) >= 9
