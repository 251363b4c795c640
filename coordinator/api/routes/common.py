"""Bits every router uses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request, status

from coordinator.api.writes import OperatorWrites
from registry.records import _NAME_PATTERN

NAME_PATTERN = _NAME_PATTERN


Responses = dict[int | str, dict[str, Any]]
"""OpenAPI `responses=` of a route."""


def name_param(what: str) -> Any:
    return Path(pattern=NAME_PATTERN, max_length=128,
                description=f"{what}: letters, digits, '_', '.', '-' (first a letter or digit)")


def get_writes(request: Request) -> OperatorWrites:
    writes: OperatorWrites = request.app.state.writes
    return writes


Writes = Annotated[OperatorWrites, Depends(get_writes)]


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")


class Ambiguous(Exception):
    """An abbreviated id matches more than one thing: answered 409 with the candidates."""

    def __init__(self, what: str, given: str, matches: list[str]) -> None:
        shown = ", ".join(matches[:10]) + (f" and {len(matches) - 10} more"
                                           if len(matches) > 10 else "")
        super().__init__(f"{what} {given!r} is ambiguous: it matches {len(matches)} "
                         f"({shown}); give more characters")
        self.matches = matches


def resolve_id(given: str, known: Iterable[str], what: str = "event id") -> str | None:
    """The id `given` names among `known`: itself, else the one equal to it ignoring case,
    else the one it is a case-insensitive prefix of (what the dashboard and the demo show
    is the first 8 characters of a GUID; Azure's documentation writes GUIDs in lower
    case, IMDS in upper case). None when nothing matches; `Ambiguous` when several do."""
    known = list(known)
    if given in known:
        return given
    folded = given.casefold()
    same = sorted(k for k in known if k.casefold() == folded)
    if len(same) == 1:
        return same[0]
    matches = same or sorted(k for k in known if k.casefold().startswith(folded))
    if len(matches) > 1:
        raise Ambiguous(what, given, matches)
    return matches[0] if matches else None


AMBIGUOUS: Responses = {409: {"description": "the id given is a prefix of several events' ids: "
                                  "`detail` says so and `matches` lists them; give more "
                                  "characters"}}
