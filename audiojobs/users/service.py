"""Users and API keys: creation, passwords, keys (stored hashed, shown once), tiers."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from audiojobs.config import Settings
from audiojobs.db import utcnow
from audiojobs.errors import Conflict, NotFound, Unauthorized, ValidationError
from audiojobs.users.models import ApiKey, User

USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
KEY_PREFIX = "aj_"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_user(session: Session, username: str, *, password: str | None, role: str = "user", tier: str,
                known_tiers: set[str]) -> User:
    if not USERNAME.match(username):
        raise ValidationError("username: 1-64 letters, digits or . _ @ -", code="invalid_value", field="username")
    if role not in {"user", "admin"}:
        raise ValidationError("role must be user or admin", code="invalid_value", field="role")
    if tier not in known_tiers:
        raise ValidationError(f"unknown tier {tier!r}", code="unknown_tier", field="tier")
    if password is not None and len(password) < MIN_PASSWORD:
        raise ValidationError(f"password: at least {MIN_PASSWORD} characters", code="invalid_value", field="password")
    if session.scalar(sa.select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} exists", code="user_exists", field="username")
    user = User(username=username, role=role, tier=tier,
                password_hash=generate_password_hash(password) if password else None)
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(sa.select(User).order_by(User.id)))


def all_user_ids(session: Session, settings: Settings) -> list[str]:
    """Every owner id of this deployment: the users table, or the single user."""
    if settings.auth_mode == "single_user":
        return [settings.single_user_id]
    return [str(i) for i in session.scalars(sa.select(User.id).where(User.disabled.is_(False)))]


def get_user(session: Session, user_id: str | int) -> User | None:
    try:
        return session.get(User, int(user_id))
    except (TypeError, ValueError):
        return None


def get_user_by_name(session: Session, username: str) -> User | None:
    return session.scalar(sa.select(User).where(User.username == username))


def check_password(session: Session, username: str, password: str) -> User | None:
    """The user if the password is right (disabled users included: the caller decides)."""
    user = get_user_by_name(session, username)
    if user is None or not user.password_hash:
        # Spend the same time as a real check, so response times do not reveal usernames.
        check_password_hash(generate_password_hash("not-a-user-password"), password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def create_api_key(session: Session, user: User, name: str) -> tuple[ApiKey, str]:
    """A new key for ``user``: the row and the key itself, which is never stored or shown again."""
    if not 1 <= len(name) <= 64:
        raise ValidationError("name: 1-64 characters", code="invalid_value", field="name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(user_id=user.id, name=name, prefix=key[:10], key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return row, key


def list_api_keys(session: Session, user_id: int) -> list[ApiKey]:
    return list(session.scalars(sa.select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)))


def revoke_api_key(session: Session, key_id: int, *, user_id: int, is_admin: bool) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None or not (is_admin or row.user_id == user_id):
        raise NotFound(f"API key {key_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class Caller(NamedTuple):
    """What authentication needs of a user: read as plain columns, no ORM object built."""

    user_id: int
    role: str
    disabled: bool
    tier: str
    token_version: int = 0
    record_use: bool = False  # the API key's last use is due to be recorded (see touch_key)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# Built once: every authenticated request runs it.
_CALLER_BY_KEY = (sa.select(User.id, User.role, User.disabled, User.tier, User.token_version, ApiKey.last_used_at)
                  .join(User, User.id == ApiKey.user_id)
                  .where(ApiKey.key_hash == sa.bindparam("key_hash"), ApiKey.revoked_at.is_(None)))


def caller_for_api_key(session: Session, key: str) -> Caller | None:
    """The user a non-revoked key belongs to, in one query, so a read-only request writes nothing
    (its last use is recorded at most once a minute, see touch_key)."""
    found = session.execute(_CALLER_BY_KEY, {"key_hash": hash_key(key)}).first()
    if found is None:
        return None
    user_id, role, disabled, tier, version, last = found
    return Caller(user_id, role, disabled, tier, version, last is None or utcnow() - last >= LAST_USED_RESOLUTION)


def caller(session: Session, user_id: str | int) -> Caller | None:
    try:
        numeric = int(user_id)
    except (TypeError, ValueError):
        return None
    found = session.execute(sa.select(User.id, User.role, User.disabled, User.tier, User.token_version)
                            .where(User.id == numeric)).first()
    return Caller(*found) if found is not None else None


def touch_key(session: Session, key: str) -> None:
    """Record the key's use, to the minute: a write on every request would serialise all of a key's
    requests on its row."""
    cutoff = utcnow() - LAST_USED_RESOLUTION
    session.execute(sa.update(ApiKey).where(ApiKey.key_hash == hash_key(key),
                                            sa.or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < cutoff))
                    .values(last_used_at=utcnow()))


def set_tier(session: Session, user: User, tier: str, known_tiers: set[str]) -> None:
    if tier not in known_tiers:
        raise ValidationError(f"unknown tier {tier!r}; known: {', '.join(sorted(known_tiers))}",
                              code="unknown_tier", field="tier")
    user.tier = tier


def set_disabled(session: Session, user: User, disabled: bool) -> None:
    """Disabling refuses the user's every token issued so far, for good (enabling does not revive them)."""
    user.disabled = disabled
    if disabled:
        revoke_tokens(user)


def revoke_tokens(user: User) -> None:
    user.token_version += 1


def change_password(session: Session, user: User, current: str, new: str) -> None:
    """Replace the password (the current one must be right): every token issued before is refused."""
    if not user.password_hash or not check_password_hash(user.password_hash, current):
        raise Unauthorized("the current password is wrong", code="invalid_credentials")
    if not MIN_PASSWORD <= len(new) <= MAX_PASSWORD:
        raise ValidationError(f"new_password: {MIN_PASSWORD} to {MAX_PASSWORD} characters", code="invalid_value",
                              field="new_password")
    if new == current:
        raise ValidationError("new_password is the current password", code="invalid_value", field="new_password")
    user.password_hash = generate_password_hash(new)
    revoke_tokens(user)
