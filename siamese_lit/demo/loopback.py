"""Requests to the page only by the address it serves: the Host header (and the Origin, when a
browser sends one) must name this machine's loopback interface and the page's port.

The page has no authentication and listens on loopback only, but a web page elsewhere can still
reach it through the user's browser: by DNS rebinding (a name of the attacker's resolving to
127.0.0.1, so the browser sends `Host: evil.example`) or by a cross-site form post (`Origin:
https://evil.example`). Both are refused before Gradio sees the request, so no function runs and
no upload is stored.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: The names of this machine's loopback interface.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _is_ours(netloc: str | None, served_port: int) -> bool:
    """Whether `netloc` (host[:port], as in a Host header or a URL) is a loopback name and our port."""
    if not netloc:
        return False
    try:
        parts = urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port or 80
    except ValueError:  # a port out of range or not a number
        return False
    return host in LOOPBACK_NAMES and port == served_port


class LoopbackOnly:
    """ASGI middleware: 421 unless the Host is a loopback name with the served port; 403 when an
    Origin is sent and names another site (`null` included)."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app, self.port = app, port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not _is_ours(headers.get("host"), self.port):
            await PlainTextResponse("Misdirected request: not this page's address", 421)(scope, receive, send)
            return
        origin = headers.get("origin")
        if origin is not None and not (origin.startswith("http://") and _is_ours(origin[7:], self.port)):
            await PlainTextResponse("Forbidden: a request from another site", 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)
