"""Which of a role's secrets are too weak to deploy, and why, without ever naming a value.

Every role's preflight refuses a secret that is still a placeholder from
inventory/group_vars/all/vault.yml.example (`change-me` passed the old length checks), shorter
than its minimum, or made of a handful of characters repeated."""

from __future__ import annotations

from typing import Any

# The placeholder texts of vault.yml.example, in lower case.
PLACEHOLDERS = ("change-me", "a random string")
MIN_DISTINCT_CHARACTERS = 5


def weak_secrets(secrets: dict[str, Any], minimum: int) -> list[str]:
    """`secrets` maps a variable name to its value; returns one reason per weak one."""
    reasons = []
    for name, value in sorted(secrets.items()):
        text = str(value)
        if any(p in text.lower() for p in PLACEHOLDERS):
            reasons.append(f"{name} is still the placeholder from vault.yml.example")
        elif len(text) < minimum:
            reasons.append(f"{name} is shorter than {minimum} characters")
        elif len(set(text)) < MIN_DISTINCT_CHARACTERS:
            reasons.append(f"{name} repeats fewer than {MIN_DISTINCT_CHARACTERS} different characters")
    return reasons


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"weak_secrets": weak_secrets}
