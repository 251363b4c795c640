"""Running the app under uvicorn, with the one tweak IMDS emulation needs.

A VM that is down must not answer at all, but uvicorn turns any handler outcome into
some HTTP response (500 when the app fails before answering). The protocol below
hands each request a scope extension (`imds_sim.drop`) that aborts the socket, so
the client sees the peer vanish, as with a rebooting host.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from imds_sim.imds import DROP_EXTENSION


class DroppingHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") == "http":
                scope.setdefault("extensions", {})[DROP_EXTENSION] = self._abort
            await inner(scope, receive, send)

        self.app = app

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket, bound now so the caller knows the port (port 0: any) and
    clients told that port can connect at once (they queue until uvicorn accepts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto says TCP, and without it every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def make_server(app: Any, *, log_level: str = "info", access_log: bool = True) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        http=DroppingHTTPProtocol,
        lifespan="on",
        log_level=log_level,
        access_log=access_log,
        proxy_headers=False,  # X-Forwarded-For must reach the app, which rejects it
        server_header=False,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
    )
    return uvicorn.Server(config)
