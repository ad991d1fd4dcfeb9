"""``/api/v1/auth``: login, token refresh, per-user API keys (multi-user mode only)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request
from flask_jwt_extended import create_access_token, create_refresh_token
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from audiojobs.api import responses as R
from audiojobs.api import tokens
from audiojobs.api.auth import current_settings, current_version, decode_jwt, login_required, multi_user_only
from audiojobs.api.openapi import Answer, documented
from audiojobs.api.schemas import KeysQuery, parse_job_id, parse_json_object, parse_model
from audiojobs.db import session_scope
from audiojobs.errors import Forbidden, NotFound, Unauthorized
from audiojobs.users import service as users
from audiojobs.users.models import User

accounts = Blueprint("accounts", __name__)


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=64)
    user_id: int | None = None


class PasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024,
                              description=f"{users.MIN_PASSWORD} to {users.MAX_PASSWORD} characters")


def _tokens(user: User | users.Caller, refresh: bool = True) -> R.Tokens:
    settings = current_settings()
    user_id = user.id if isinstance(user, User) else user.user_id
    version = {"ver": user.token_version}
    tokens = R.Tokens(access_token=create_access_token(identity=str(user_id),
                                                       additional_claims={"role": user.role, **version}),
                      token_type="bearer", expires_in=settings.jwt_access_minutes * 60)  # noqa: S106 (a scheme)
    if refresh:
        tokens.refresh_token = create_refresh_token(identity=str(user_id), additional_claims=version)
    return tokens


def _refresh_claims() -> dict[str, Any]:
    """The refresh token in ``Authorization: Bearer``: valid, and not logged out."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the refresh token as Authorization: Bearer <token>")
    claims = decode_jwt(token.strip(), "refresh")
    if tokens.is_revoked(current_settings(), claims.get("jti", "")):
        raise Unauthorized("this refresh token was revoked (logged out); log in again", code="token_revoked")
    return claims


@accounts.post("/login")
@documented(ok={200: R.Tokens}, errors=(401, 404), auth=False, tag="auth", json=LoginRequest)
def login() -> Answer:
    """Log in (multi-user mode): access and refresh tokens"""
    multi_user_only()
    req = parse_model(LoginRequest, parse_json_object(request.get_data(cache=False)))
    with session_scope(current_settings().effective_database_url) as session:
        user = users.check_password(session, req.username, req.password)
        if user is None:
            raise Unauthorized("wrong username or password", code="invalid_credentials")
        if user.disabled:
            raise Unauthorized("this user is disabled", code="user_disabled")
        return _tokens(user)


@accounts.post("/refresh")
@documented(ok={200: R.Tokens}, errors=(401, 404), auth=False, tag="auth")
def refresh() -> Answer:
    """A new access token for a refresh token (Authorization: Bearer)"""
    multi_user_only()
    claims = _refresh_claims()
    with session_scope(current_settings().effective_database_url) as session:
        caller = users.caller(session, claims.get("sub", ""))
        if caller is None:
            raise Unauthorized("invalid token", code="invalid_token")
        if caller.disabled:
            raise Unauthorized("this user is disabled", code="user_disabled")
        return _tokens(current_version(caller, claims), refresh=False)


@accounts.post("/logout")
@documented(ok={204: None}, errors=(401, 404), auth=False, tag="auth")
def logout() -> Answer:
    """Log out: revoke the refresh token (Authorization: Bearer <refresh token>)

    The refresh token is refused from now on, by every API process; the access tokens already issued
    run out on their own (AUDIOJOBS_JWT_ACCESS_MINUTES). Logging out twice is no error.
    """
    multi_user_only()
    try:
        claims = _refresh_claims()
    except Unauthorized as refusal:
        if refusal.code == "token_revoked":  # logged out already: nothing more to do
            return "", 204
        raise
    tokens.revoke(current_settings(), claims.get("jti", ""), int(claims.get("exp", 0)))
    return "", 204


@accounts.post("/password")
@documented(ok={200: R.Tokens}, errors=(401, 403, 404), tag="auth", json=PasswordRequest)
@login_required
def change_password() -> Answer:
    """Change your password

    Needs the current password. Every token issued before (access and refresh, on every device) is
    refused at once; the answer carries new tokens for this session. API keys stay valid.
    """
    multi_user_only()
    req = parse_model(PasswordRequest, parse_json_object(request.get_data(cache=False)))
    with session_scope(current_settings().effective_database_url) as session:
        user = users.get_user(session, g.principal.user_id)
        if user is None:
            raise Unauthorized("invalid credentials")
        users.change_password(session, user, req.current_password, req.new_password)
        session.flush()
        return _tokens(user)


def _target_user(session: Session, requested: int | None) -> User:
    """The caller, or (admins only) the user they name."""
    own_id = int(g.principal.user_id)
    if requested is not None and requested != own_id and not g.principal.is_admin:
        raise Forbidden("only admins manage other users' keys")
    user = users.get_user(session, requested if requested is not None else own_id)
    if user is None:
        raise NotFound(f"user {requested} not found")
    return user


@accounts.post("/keys")
@documented(ok={201: R.NewApiKey}, errors=(403, 404), tag="auth", json=KeyRequest)
@login_required
def create_key() -> Answer:
    """Create an API key (multi-user mode)"""
    multi_user_only()
    req = parse_model(KeyRequest, parse_json_object(request.get_data(cache=False)))
    with session_scope(current_settings().effective_database_url) as session:
        row, key = users.create_api_key(session, _target_user(session, req.user_id), req.name)
        return R.NewApiKey(**R.ApiKeyOut.fields_of(row), key=key), 201


@accounts.get("/keys")
@documented(ok={200: R.ApiKeyList}, errors=(403, 404), tag="auth", query=KeysQuery)
@login_required
def list_keys() -> Answer:
    """List API keys (multi-user mode)"""
    multi_user_only()
    raw = request.args.get("user_id")
    with session_scope(current_settings().effective_database_url) as session:
        user = _target_user(session, parse_job_id(raw, "user_id") if raw else None)
        return R.ApiKeyList(keys=[R.ApiKeyOut.of(k) for k in users.list_api_keys(session, user.id)])


@accounts.delete("/keys/<key_id>")
@documented(ok={204: None}, errors=(403, 404), tag="auth")
@login_required
def revoke_key(key_id: str) -> Answer:
    """Revoke an API key (multi-user mode)"""
    multi_user_only()
    with session_scope(current_settings().effective_database_url) as session:
        users.revoke_api_key(session, parse_job_id(key_id, "key_id"), user_id=int(g.principal.user_id),
                             is_admin=g.principal.is_admin)
    return "", 204
