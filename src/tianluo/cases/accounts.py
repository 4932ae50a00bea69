"""Institutions, users, passwords (argon2id), sessions and the log-in rate limit.

Passwords are hashed with argon2id (argon2-cffi's RFC 9106 low-memory profile by
default) and re-hashed on log-in when the parameters change. Session tokens are 256-bit
random strings handed to the client once; the database keeps only their SHA-256, so a
copy of the database opens no session. Failed log-ins are counted per user name and
address: five within fifteen minutes (since the last success) close the door for the
rest of that window.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select

from tianluo.cases._base import SYSTEM, StoreBase, User, is_system, require_tenant_admin
from tianluo.cases.errors import Conflict, Invalid, NotAllowed, NotFound
from tianluo.cases.model import LoginAttempt, SessionRow, Tenant, UserRow
from tianluo.cases.workflow import ROLES

MIN_PASSWORD = 10
MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
DEFAULT_SESSION_TTL = dt.timedelta(hours=8)
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def token_digest(token: str) -> str:
    """What the sessions table stores for a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class AccountsMixin(StoreBase):
    """Tenants, users, authentication and sessions."""

    hasher: PasswordHasher
    _dummy_hash: str | None = None

    # -- tenants ---------------------------------------------------------------------------

    def create_tenant(self, tenant: str, name: str | None = None, *, actor: User = SYSTEM) -> dict[str, Any]:
        """Create an institution (operator only: the CLI, i.e. `SYSTEM`)."""
        if not is_system(actor):
            raise NotAllowed("institutions are created by the deployment operator (CLI)")
        if not _TENANT.match(tenant or ""):
            raise Invalid(f"tenant id {tenant!r}: use 1–64 letters, digits, '_', '.' or '-'")
        with self._write() as s:
            if s.get(Tenant, tenant) is not None:
                raise Conflict(f"tenant {tenant!r} exists already")
            row = Tenant(tenant=tenant, name=name or tenant, created_at=self.now())
            s.add(row)
            self._audit(s, actor, "tenant.create", "tenant", tenant, {"name": row.name}, tenant=tenant)
            return {"tenant": row.tenant, "name": row.name, "created_at": row.created_at}

    def list_tenants(self) -> list[dict[str, Any]]:
        """Every institution (operator and supervisor views)."""
        with self._read() as s:
            rows = s.execute(select(Tenant).order_by(Tenant.tenant)).scalars().all()
            return [{"tenant": r.tenant, "name": r.name, "created_at": r.created_at} for r in rows]

    # -- users -----------------------------------------------------------------------------

    def create_user(self, username: str, password: str, role: str, tenant: str, *,
                    display_name: str | None = None, actor: User = SYSTEM) -> User:
        """Create a user; the operator (CLI) may create any, a tenant admin only non-supervisors of its tenant."""
        if not _NAME.match(username or ""):
            raise Invalid(f"user name {username!r}: use 2–64 letters, digits, '_', '.', '@' or '-'")
        if username == SYSTEM.username:
            raise Invalid(f"user name {username!r} is reserved")
        if role not in ROLES:
            raise Invalid(f"role {role!r}: use one of {', '.join(ROLES)}")
        require_tenant_admin(actor, tenant, "create users")
        if role == "supervisor" and not is_system(actor):
            raise NotAllowed("supervisors are created by the deployment operator (CLI), not per tenant")
        _check_password(password)
        digest = self.hasher.hash(password)
        with self._write() as s:
            if s.get(Tenant, tenant) is None:
                raise NotFound(f"no tenant {tenant!r}; create it first")
            if s.get(UserRow, username) is not None:
                raise Conflict(f"user {username!r} exists already")
            now = self.now()
            row = UserRow(username=username, tenant=tenant, role=role, display_name=display_name or username,
                          password_hash=digest, disabled=False, created_at=now, password_changed_at=now)
            s.add(row)
            self._audit(s, actor, "user.create", "user", username,
                        {"role": role, "display_name": row.display_name}, tenant=tenant)
            return _user(row)

    def get_user(self, username: str) -> User:
        """A user as the value every method takes as `actor` (NotFound if unknown)."""
        with self._read() as s:
            row = s.get(UserRow, username)
            if row is None:
                raise NotFound(f"no user {username!r}")
            return _user(row)

    def list_users(self, tenant: User | str) -> list[dict[str, Any]]:
        """Users of a tenant (never their hashes)."""
        t = tenant.tenant if isinstance(tenant, User) else tenant
        with self._read() as s:
            rows = s.execute(select(UserRow).where(UserRow.tenant == t).order_by(UserRow.username)).scalars().all()
            return [{"username": r.username, "display_name": r.display_name, "role": r.role, "tenant": r.tenant,
                     "disabled": r.disabled, "created_at": r.created_at} for r in rows]

    def set_password(self, actor: User, username: str, new_password: str, *,
                     current_password: str | None = None) -> None:
        """Change a password: users their own (with the current one), admins their tenant's, the operator any.

        Every session of the user ends: whoever had the old password is logged out.
        """
        _check_password(new_password)
        with self._write() as s:
            row = s.get(UserRow, username)
            if row is None:
                raise NotFound(f"no user {username!r}")
            if actor.username == username and not is_system(actor):
                if current_password is None or not self._verify(row.password_hash, current_password):
                    raise NotAllowed("the current password is wrong")
            else:
                require_tenant_admin(actor, row.tenant, "change other users' passwords")
            row.password_hash = self.hasher.hash(new_password)
            row.password_changed_at = self.now()
            s.execute(delete(SessionRow).where(SessionRow.username == username))
            self._audit(s, actor, "user.password", "user", username, {}, tenant=row.tenant)

    def disable_user(self, actor: User, username: str, disabled: bool = True) -> None:
        """Disable (or re-enable) a log-in; a disabled user's sessions stop working at once."""
        with self._write() as s:
            row = s.get(UserRow, username)
            if row is None:
                raise NotFound(f"no user {username!r}")
            require_tenant_admin(actor, row.tenant, "disable users")
            row.disabled = disabled
            if disabled:
                s.execute(delete(SessionRow).where(SessionRow.username == username))
            self._audit(s, actor, "user.disable" if disabled else "user.enable", "user", username, {},
                        tenant=row.tenant)

    # -- authentication --------------------------------------------------------------------

    def _verify(self, digest: str, password: str) -> bool:
        try:
            return self.hasher.verify(digest, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def login_allowed(self, username: str, address: str) -> bool:
        """False after `MAX_FAILURES` failed log-ins of this user from this address within 15 minutes.

        Only failures since the last successful log-in count; the API answers 429 when False.
        """
        now = self.now()
        since = now - FAILURE_WINDOW
        with self._read() as s:
            last_ok = s.execute(
                select(func.max(LoginAttempt.at)).where(LoginAttempt.username == username,
                                                        LoginAttempt.address == address,
                                                        LoginAttempt.success.is_(True))
            ).scalar_one()
            if last_ok is not None:
                since = max(since, last_ok)
            failures = s.execute(
                select(func.count()).select_from(LoginAttempt).where(
                    LoginAttempt.username == username, LoginAttempt.address == address,
                    LoginAttempt.success.is_(False), LoginAttempt.at > since)
            ).scalar_one()
        return failures < MAX_FAILURES

    def authenticate(self, username: str, password: str, *, address: str = "?") -> User | None:
        """The user if the password is right and the user is enabled, else None; every attempt is recorded.

        Does not check the rate limit (ask `login_allowed` first). Unknown users cost the same
        argon2 work as known ones, so timing does not reveal which names exist.
        """
        with self._read() as s:
            row = s.get(UserRow, username)
            digest = row.password_hash if row is not None else None
        if digest is None:
            if self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
            self._verify(self._dummy_hash, password)
            ok = False
        else:
            ok = self._verify(digest, password) and row is not None and not row.disabled
        with self._write(chain=ok) as s:
            s.add(LoginAttempt(username=username[:200], address=(address or "?")[:100], at=self.now(), success=ok))
            if not ok or row is None:
                return None
            user = _user(row)
            if digest is not None and self.hasher.check_needs_rehash(digest):
                fresh = s.get(UserRow, username)
                if fresh is not None:
                    fresh.password_hash = self.hasher.hash(password)
            self._audit(s, user, "auth.login", "user", username, {"address": address}, tenant=user.tenant)
            return user

    def create_session(self, username: str, ttl: dt.timedelta = DEFAULT_SESSION_TTL) -> tuple[str, dt.datetime]:
        """A new session token for a user and when it expires (only its SHA-256 is stored)."""
        if ttl <= dt.timedelta(0):
            raise Invalid("a session needs a positive lifetime")
        token = secrets.token_urlsafe(32)
        now = self.now()
        expires = now + ttl
        with self._write(chain=False) as s:
            row = s.get(UserRow, username)
            if row is None or row.disabled:
                raise NotFound(f"no active user {username!r}")
            s.execute(delete(SessionRow).where(SessionRow.username == username, SessionRow.expires_at <= now))
            s.add(SessionRow(token_sha256=token_digest(token), username=username, created_at=now, expires_at=expires))
        return token, expires

    def resolve_session(self, token: str) -> User | None:
        """The user behind a live session token; None when unknown, expired, revoked or the user is disabled."""
        if not token:
            return None
        with self._read() as s:
            sess = s.get(SessionRow, token_digest(token))
            if sess is None or sess.revoked_at is not None or sess.expires_at <= self.now():
                return None
            row = s.get(UserRow, sess.username)
            if row is None or row.disabled:
                return None
            return _user(row)

    def revoke_session(self, token: str) -> bool:
        """End a session (log-out); True if it was live."""
        with self._write() as s:
            sess = s.get(SessionRow, token_digest(token))
            if sess is None or sess.revoked_at is not None:
                return False
            sess.revoked_at = self.now()
            row = s.get(UserRow, sess.username)
            if row is not None:
                self._audit(s, _user(row), "auth.logout", "user", row.username, {}, tenant=row.tenant)
            return True


def _user(row: UserRow) -> User:
    return User(username=row.username, role=row.role, tenant=row.tenant, display_name=row.display_name)


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise Invalid(f"passwords have at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise Invalid("passwords have at most 1024 characters")
