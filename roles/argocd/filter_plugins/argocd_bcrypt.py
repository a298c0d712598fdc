"""A bcrypt hash of the admin password that only changes when the password does.

A fresh hash has a fresh salt, so hashing on every run would change the Helm values (and
restart argocd-server) each time. Reusing the hash already in the release when it still matches
the password keeps runs idempotent without a fixed salt."""

from __future__ import annotations

from typing import Any

import bcrypt


def argocd_bcrypt(password: str, previous: Any = None) -> str:
    secret = str(password).encode()
    if isinstance(previous, str) and previous.startswith("$2"):
        try:
            if bcrypt.checkpw(secret, previous.encode()):
                return previous
        except ValueError:
            pass
    return bcrypt.hashpw(secret, bcrypt.gensalt(rounds=10)).decode()


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"argocd_bcrypt": argocd_bcrypt}
