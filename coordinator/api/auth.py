"""Bearer-token authentication with two roles, `viewer` and `operator`.

Tokens come from the coordinator config (`tokens: {token: role}`). The caller is named
in the audit log as `<role>:<first 4 characters of the token>…` — enough to tell tokens
apart, not enough to reuse one. Requests without a token get the config's `anonymous`
role when it is set, else 401.

- missing token (and no anonymous role), unknown token: 401 with `WWW-Authenticate: Bearer`
- anonymous caller on an action that needs more than its role: 401 (a token would help)
- a token whose role is too low: 403
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from coordinator.node import CoordinatorNode

RANKS = {"viewer": 1, "operator": 2}

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>`; "
                    "tokens and their roles (viewer, operator) come from the config")


@dataclass(frozen=True)
class Caller:
    role: str
    name: str
    """How the audit log names the caller."""
    anonymous: bool = False


def caller_name(role: str, token: str) -> str:
    return f"{role}:{token[:4]}…"


def identify(node: CoordinatorNode, token: str | None) -> Caller | None:
    """The caller of a request carrying `token` (None: no token); None when refused."""
    if not token:
        anonymous = node.config.anonymous
        return Caller(anonymous, "anonymous", anonymous=True) if anonymous else None
    found = None
    given = token.encode()
    for known, role in node.config.tokens.items():
        # compare against every token, in constant time, so timing tells nothing
        if hmac.compare_digest(known.encode(), given):
            found = Caller(role, caller_name(role, known))
    return found


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail,
                         headers={"WWW-Authenticate": "Bearer"})


def get_node(request: Request) -> CoordinatorNode:
    node: CoordinatorNode = request.app.state.node
    return node


NodeDep = Annotated[CoordinatorNode, Depends(get_node)]


def _authenticate(request: Request, node: CoordinatorNode,
                  credentials: HTTPAuthorizationCredentials | None) -> Caller:
    header = request.headers.get("authorization")
    if header and credentials is None:
        raise _unauthorized("Authorization header must be 'Bearer <token>'")
    caller = identify(node, credentials.credentials if credentials else None)
    if caller is None:
        raise _unauthorized("unknown bearer token" if credentials
                            else "missing bearer token")
    return caller


def require(role: str) -> Callable[..., Caller]:
    """A dependency that authenticates the request and demands at least `role`."""

    def dependency(request: Request, node: NodeDep,
                   credentials: Annotated[HTTPAuthorizationCredentials | None,
                                          Depends(bearer)]) -> Caller:
        caller = _authenticate(request, node, credentials)
        if RANKS.get(caller.role, 0) < RANKS[role]:
            if caller.anonymous:
                raise _unauthorized(f"this action needs the {role} role: send a bearer token")
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this action needs the {role} role; your token is {caller.role}")
        return caller

    dependency.__name__ = f"require_{role}"
    return dependency


Viewer = Annotated[Caller, Depends(require("viewer"))]
Operator = Annotated[Caller, Depends(require("operator"))]
