"""Bits every router uses."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status

from coordinator.api.writes import OperatorWrites
from registry.records import _NAME_PATTERN

NAME_PATTERN = _NAME_PATTERN


def name_param(what: str):
    return Path(pattern=NAME_PATTERN, max_length=128,
                description=f"{what}: letters, digits, '_', '.', '-' (first a letter or digit)")


def get_writes(request: Request) -> OperatorWrites:
    return request.app.state.writes


Writes = Annotated[OperatorWrites, Depends(get_writes)]


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")
