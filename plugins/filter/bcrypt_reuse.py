"""A bcrypt hash of a password that only changes when the password does.

A fresh hash has a fresh salt, so hashing on every run would change the Helm values (and
restart what reads them) on every run. Reusing the hash already deployed while it still matches
the password keeps runs idempotent without a fixed salt. Used by the argocd and loki roles."""

from __future__ import annotations

from typing import Any

import bcrypt


def bcrypt_reuse(password: str, previous: Any = None, ident: str = "2b") -> str:
    """`ident` "2y" gives Apache htpasswd's spelling of the same algorithm (Traefik's basicAuth)."""
    secret = str(password).encode()
    if isinstance(previous, str) and previous.startswith("$2"):
        try:
            if bcrypt.checkpw(secret, previous.encode()):
                return previous
        except ValueError:
            pass
    fresh = bcrypt.hashpw(secret, bcrypt.gensalt(rounds=10)).decode()
    return fresh.replace("$2b$", f"${ident}$", 1)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"bcrypt_reuse": bcrypt_reuse}
