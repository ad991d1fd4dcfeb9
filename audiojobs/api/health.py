"""Liveness: ``/healthz`` answers while the process serves requests."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from audiojobs.api import responses as R
from audiojobs.api.openapi import operation

health = Blueprint("health", __name__)


@health.get("/healthz")
@operation("Liveness: the process serves requests", responses={200: R.Health}, auth=False, tag="health")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok"})
