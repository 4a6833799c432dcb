"""Who may use the workspace, and how they prove it.

- Passwords: argon2id (argon2-cffi's defaults), rehashed at login when the parameters change. An
  unknown username costs the same hash check as a wrong password.
- Pages: a session cookie (Starlette's SessionMiddleware: signed with the session secret,
  HttpOnly, SameSite=Strict, Max-Age SESSION_MAX_AGE_S) carries the user's id and a CSRF token;
  every POST form sends the token back in `csrf_token`, compared in constant time.
- API: `Authorization: Bearer <token>`; only each token's SHA-256 is stored.
- Logins: more than LOGIN_FAILURES_ALLOWED failures within LOGIN_WINDOW_S for one username or one
  address answer 429 until the window has passed (in memory, per process).
- Roles, each with everything of the one before: agent (the queue, and acting on the tickets of
  the tenants granted, "*": every tenant), lead (the leads' pages: KPI panel, routing overrides,
  QA sample; a rollback needs the archetype's named owner besides), admin (users and API tokens).
  A request above one's role answers 403 and changes nothing (`User.may`).
- A disabled user is nobody: their login, session and tokens are refused.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from services.workspace import metrics
from services.workspace.store import ALL_TENANTS, WorkspaceStore

log = logging.getLogger(__name__)

ROLES = ("agent", "lead", "admin")  # each may do what the ones before it may
AGENT, LEAD, ADMIN = ROLES
SESSION_MAX_AGE_S = 8 * 3600
SESSION_COOKIE = "supportflow_workspace"
LOGIN_FAILURES_ALLOWED = 5
LOGIN_WINDOW_S = 60.0
CSRF_FIELD = "csrf_token"

_hasher = PasswordHasher()
# Checked against when the username is unknown, so that answering takes as long as for a known one.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def session_secret(configured: str) -> str:
    """The configured secret, or a random one for this process (every restart logs everyone out)."""
    return configured or secrets.token_urlsafe(32)


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    grant: frozenset[str] | None  # the tenants this user may see; None: every tenant

    @property
    def agent(self) -> str:
        return f"agent:{self.username}"

    def may(self, role: str) -> bool:
        """Whether this user's role is `role` or above it."""
        return self.role in ROLES and ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, tenant: str) -> bool:
        return self.grant is None or tenant in self.grant

    @classmethod
    def from_row(cls, row: dict) -> "User":
        tenants = row["tenants"].strip()
        grant = None if tenants == ALL_TENANTS else frozenset(t.strip() for t in tenants.split(",") if t.strip())
        return cls(id=row["id"], username=row["username"], role=row["role"], grant=grant)


class LoginLimiter:
    """Failed logins per username and per address over a sliding window."""

    def __init__(self, allowed: int = LOGIN_FAILURES_ALLOWED, window_s: float = LOGIN_WINDOW_S,
                 clock=time.monotonic) -> None:  # noqa: ANN001
        self._allowed = allowed
        self._window_s = window_s
        self._clock = clock
        self._failures: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def blocked(self, username: str, address: str) -> bool:
        with self._lock:
            return any(self._recent(key) >= self._allowed for key in self._keys(username, address))

    def failed(self, username: str, address: str) -> None:
        with self._lock:
            now = self._clock()
            for key in self._keys(username, address):
                self._failures[key].append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{username.lower()}", None)

    def _recent(self, key: str) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        horizon = self._clock() - self._window_s
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        return len(times)

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, ...]:
        return (f"user:{username.lower()}", f"addr:{address}") if address else (f"user:{username.lower()}",)


@dataclass(frozen=True)
class LoginResult:
    outcome: str  # success, failure, rate_limited
    user: User | None = None


class Authenticator:
    def __init__(self, store: WorkspaceStore, limiter: LoginLimiter | None = None) -> None:
        self._store = store
        self._limiter = limiter or LoginLimiter()

    def login(self, username: str, password: str, address: str) -> LoginResult:
        username = username.strip()[:150]
        if self._limiter.blocked(username, address):
            self._store.audit(username, "login_refused", detail="rate limited", address=address)
            metrics.LOGINS.labels("rate_limited").inc()
            return LoginResult("rate_limited")
        row = self._store.user_by_name(username) if username else None
        ok = _verify(row["password_hash"] if row else _DUMMY_HASH, password) and row is not None and not row["disabled"]
        if not ok:
            self._limiter.failed(username, address)
            self._store.audit(username, "login_refused", detail="wrong username or password", address=address)
            metrics.LOGINS.labels("failure").inc()
            return LoginResult("failure")
        if _hasher.check_needs_rehash(row["password_hash"]):
            self._store.set_password_hash(row["id"], hash_password(password))
        self._limiter.succeeded(username)
        user = User.from_row(row)
        self._store.audit(user.agent, "login", address=address)
        metrics.LOGINS.labels("success").inc()
        return LoginResult("success", user)

    def user(self, user_id: object) -> User | None:
        if not isinstance(user_id, int):
            return None
        row = self._store.user_by_id(user_id)
        return User.from_row(row) if row and not row["disabled"] else None

    def bearer(self, authorization: str) -> User | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        row = self._store.user_by_token(token_digest(token.strip()))
        return User.from_row(row) if row and not row["disabled"] else None


def new_api_token() -> str:
    """A bearer token: shown once to the admin who made it; only its digest is kept."""
    return secrets.token_urlsafe(32)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# --- CSRF ---------------------------------------------------------------------------------------


def csrf_token(session: dict) -> str:
    """The session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(session: dict, submitted: object) -> bool:
    expected = session.get("csrf")
    return (isinstance(expected, str) and bool(expected) and isinstance(submitted, str)
            and hmac.compare_digest(expected.encode(), submitted.encode()))


# --- the first admin ----------------------------------------------------------------------------


def bootstrap_admin(store: WorkspaceStore, username: str, password: str, api_token: str) -> str | None:
    """With no user yet, create `username` as an admin of every tenant, with `password` or, when it
    is empty, a generated one, which is returned (and nothing else ever shows it). `api_token`,
    when set, is registered for that admin at every start (already there: nothing happens)."""
    generated = None
    if store.user_count() == 0:
        if not password:
            generated = password = secrets.token_urlsafe(15)
        store.create_user(username, hash_password(password), "admin", ALL_TENANTS)
        log.info("first admin created", extra={"fields": {"user": username}})
    if api_token:
        admin = store.user_by_name(username)
        if admin is None:
            log.warning("SUPPORTFLOW_WORKSPACE_API_TOKEN is set but its user does not exist: not registered",
                        extra={"fields": {"user": username}})
        elif store.add_token(token_digest(api_token), admin["id"]):
            log.info("API token registered", extra={"fields": {"user": username}})
    return generated
