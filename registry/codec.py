"""Bytes in ZooKeeper <-> records. A malformed record is logged and skipped, never fatal."""

from __future__ import annotations

import logging
from typing import TypeVar

from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

R = TypeVar("R", bound=BaseModel)


def encode(record: BaseModel) -> bytes:
    return record.model_dump_json().encode()


def decode(kind: type[R], data: bytes | None, where: str = "") -> R | None:
    """The record, or None (logged) when the bytes are empty or not a valid `kind`."""
    if not data:
        return None
    try:
        return kind.model_validate_json(data)
    except ValidationError as exc:
        log.warning("skipping malformed %s at %s: %s", kind.__name__, where or "?",
                    exc.errors(include_url=False)[:3])
        return None
