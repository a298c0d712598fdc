"""One user: a scrypt-hashed password, server-side sessions, CSRF tokens, API tokens, throttling.

Secrets never leave this module in clear text except once, at creation (a new session cookie or
API token). The database stores only hashes of session ids and tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .db import Database, get_setting, now_iso, set_setting
from .errors import AppError, invalid, not_found

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
TOKEN_PREFIX = "tp_"  # noqa: S105 - a public marker that makes leaked tokens greppable
MAX_TOKEN_NAME = 100


# Each scrypt holds 128 · r · n bytes (32 MiB) while it runs. Logins from many addresses at once
# would hold that once per server thread, so they take turns: the memory is bounded whoever asks.
PARALLEL_SCRYPTS = 2
_scrypt_slots = threading.BoundedSemaphore(PARALLEL_SCRYPTS)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _scrypt_slots:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))


def secret_hash(text: str) -> str:
    """What the database keeps of a session id or a token (they are random: no salt needed)."""
    return hashlib.sha256(text.encode()).hexdigest()


def same_secret(sent: str, expected: str) -> bool:
    """Constant-time comparison of a secret a client sent. Secrets are ASCII: any other
    character means a wrong secret (``hmac.compare_digest`` would raise on it)."""
    return sent.isascii() and expected.isascii() and hmac.compare_digest(sent, expected)


@dataclass(frozen=True)
class Principal:
    """Who made a request: via a session cookie (needs CSRF) or an API token (does not)."""

    kind: str  # "session" | "token"
    csrf: str | None = None


class LoginThrottle:
    """At most ``max_failures`` failed logins per client within ``window`` seconds.

    An attempt is reserved before the password is checked (``begin``) and settled after
    (``end``), so concurrent guesses count against the limit while they are being checked:
    forty at once are refused beyond the limit, not checked forty times."""

    def __init__(self, max_failures: int, window: int) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def _retry_after(self, client: str, now: float) -> int:
        q = self._failures.get(client)
        while q and q[0] <= now - self.window:
            q.popleft()
        used = len(q or ()) + self._pending.get(client, 0)
        if used < self.max_failures:
            return 0
        if q and len(q) >= self.max_failures:
            return max(1, int(q[0] + self.window - now) + 1)
        return 1  # the limit is reached only by attempts still being checked

    def begin(self, client: str) -> int:
        """Reserve an attempt; return 0, or the seconds to wait when the limit is reached."""
        with self._lock:
            wait = self._retry_after(client, time.monotonic())
            if not wait:
                self._pending[client] = self._pending.get(client, 0) + 1
            return wait

    def end(self, client: str, succeeded: bool) -> None:
        with self._lock:
            left = self._pending.pop(client, 1) - 1
            if left > 0:
                self._pending[client] = left
            if succeeded:
                self._failures.pop(client, None)
                return
            self._failures.setdefault(client, deque()).append(time.monotonic())
            if len(self._failures) > 10_000:  # bound memory under a spray of clients
                self._failures.pop(next(iter(self._failures)))


class Auth:
    def __init__(self, db: Database, secret_key: str, session_days: int, throttle: LoginThrottle):
        self.db = db
        self.key = secret_key.encode()
        self.session_seconds = session_days * 86400
        self.throttle = throttle

    # --- password --------------------------------------------------------------------------
    def has_password(self) -> bool:
        return get_setting(self.db.conn, "password_hash") is not None

    def set_password(self, password: str) -> None:
        if not isinstance(password, str) or not (
            MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS
        ):
            raise invalid("password", f"the password needs {MIN_PASSWORD_CHARS} or more characters")
        hashed = hash_password(password)
        with self.db.write() as conn:
            set_setting(conn, "password_hash", hashed)
            conn.execute("DELETE FROM sessions")  # a new password logs every session out

    # --- sessions --------------------------------------------------------------------------
    def _sign(self, value: str) -> str:
        mac = hmac.new(self.key, value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def login(self, password: Any, client: str) -> tuple[str, str]:
        """Check the password; return (cookie value, csrf token) or raise 401/429."""
        wait = self.throttle.begin(client)
        if wait:
            raise AppError(
                429, "too_many_attempts", f"too many failed logins; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        ok = False
        try:
            stored = get_setting(self.db.conn, "password_hash")
            ok = isinstance(password, str) and len(password) <= MAX_PASSWORD_CHARS \
                and stored is not None and verify_password(password, stored)
        finally:
            self.throttle.end(client, ok)
        if not ok:
            raise AppError(401, "bad_password", "wrong password", "password")
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        with self.db.write() as conn:
            conn.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
            conn.execute(
                "INSERT INTO sessions (id_hash, csrf, expires) VALUES (?, ?, ?)",
                (secret_hash(session_id), csrf, time.time() + self.session_seconds),
            )
        return f"{session_id}.{self._sign(session_id)}", csrf

    def session(self, cookie: str | None) -> Principal | None:
        if not cookie or "." not in cookie:
            return None
        session_id, _, mac = cookie.rpartition(".")
        if not session_id.isascii() or not same_secret(mac, self._sign(session_id)):
            return None
        row = self.db.conn.execute(
            "SELECT csrf, expires FROM sessions WHERE id_hash = ?", (secret_hash(session_id),)
        ).fetchone()
        if row is None or row["expires"] < time.time():
            return None
        return Principal("session", csrf=row["csrf"])

    def logout(self, cookie: str | None) -> None:
        if cookie and "." in cookie:
            session_id = cookie.rpartition(".")[0]
            with self.db.write() as conn:
                conn.execute("DELETE FROM sessions WHERE id_hash = ?", (secret_hash(session_id),))

    # --- API tokens ------------------------------------------------------------------------
    def create_token(self, name: Any) -> dict[str, Any]:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_TOKEN_NAME:
            raise invalid("name", f"a token needs a name of 1-{MAX_TOKEN_NAME} characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.write() as conn:
            cur = conn.execute(
                "INSERT INTO tokens (name, token_hash, created) VALUES (?, ?, ?)",
                (name.strip(), secret_hash(token), now_iso()),
            )
            row = conn.execute("SELECT * FROM tokens WHERE id = ?", (cur.lastrowid,)).fetchone()
        return {**_token_dict(row), "token": token}

    def list_tokens(self) -> list[dict[str, Any]]:
        rows = self.db.conn.execute("SELECT * FROM tokens ORDER BY id").fetchall()
        return [_token_dict(r) for r in rows]

    def delete_token(self, token_id: int) -> None:
        with self.db.write() as conn:
            if conn.execute("DELETE FROM tokens WHERE id = ?", (token_id,)).rowcount == 0:
                raise not_found("token")

    def bearer(self, header: str | None, touch: bool = True) -> Principal | None:
        """The principal of an ``Authorization: Bearer`` header. ``touch`` records the use
        (at most once a minute); the server's pre-body gate checks without writing."""
        if not header or not header.startswith("Bearer "):
            return None
        token = header[len("Bearer "):].strip()
        if not token.startswith(TOKEN_PREFIX) or not token.isascii():
            return None
        token_hash = secret_hash(token)
        row = self.db.conn.execute(
            "SELECT id, last_used FROM tokens WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        if row is None:
            return None
        # last_used to the minute: one write per token per minute at most
        stamp = now_iso()[:16]
        if touch and (row["last_used"] or "")[:16] != stamp:
            with self.db.write() as conn:
                conn.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (now_iso(), row["id"]))
        return Principal("token")


def _token_dict(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "created": row["created"],
            "last_used": row["last_used"]}
