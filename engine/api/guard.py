"""Cross-site requests refused in the default mode (loopback, no token).

Without a token anything that can reach 127.0.0.1 may use the API, and a web
page in the user's browser can reach it too:

* a form POST from another site (``Origin: http://evil.example``) would start
  or cancel batches and clear the caches. A POST whose ``Origin`` (or
  ``Referer`` when a browser sent no ``Origin``) is not the API's own is
  refused with 403. A POST with neither header comes from a program such as
  curl or httpx, not from a page, and passes.
* DNS rebinding points a site's own name at 127.0.0.1, so its pages can read
  the GET answers. Every request whose ``Host`` is not the address the server
  listens on (or ``localhost``), with its port, gets 421.

The address and port are those of the connection's listening socket (the
ASGI ``server``), so they are right whatever port the server was given. With
a token the token is the guard, and none of this applies.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from engine.api.errors import error

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}


class SameOrigin:
    """ASGI middleware: 421 for a foreign ``Host``, 403 for a cross-site POST.

    Args:
        app: the application behind it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        own = _own_hosts(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not _is_own(headers.get("host", ""), own):
            response = error(
                421,
                "Host header names another server; without a token only the address the API "
                "listens on and localhost are served (protects against DNS rebinding)",
                "Host",
            )
        elif scope["method"] not in SAFE_METHODS and not _same_origin(headers, own):
            response = error(
                403,
                "cross-site request refused: the Origin (or Referer) is not this API's own; "
                "without a token only same-origin pages and non-browser clients may POST",
                "Origin",
            )
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def _own_hosts(scope: Scope) -> tuple[frozenset[str], int | None]:
    """Host names the server answers to, and the port it listens on."""
    server = scope.get("server")
    if not server:  # e.g. a Unix socket: no address to compare with, so nothing matches
        return frozenset(), None
    host, port = server
    return frozenset({"localhost", host.lower().strip("[]")}), port


def _is_own(authority: str, own: tuple[frozenset[str], int | None], scheme: str = "http") -> bool:
    """Whether ``host[:port]`` names this server (no port: the scheme's default)."""
    try:
        parts = urlsplit(f"//{authority}")
        host, port = parts.hostname, parts.port or DEFAULT_PORTS[scheme]
    except ValueError:  # a malformed port or bracket
        return False
    names, own_port = own
    return host is not None and host in names and port == own_port


def _same_origin(headers: dict[str, str], own: tuple[frozenset[str], int | None]) -> bool:
    """Whether a POST comes from one of the API's own pages, or from no page at all."""
    origin = headers.get("origin") or headers.get("referer")
    if origin is None:
        return True  # no browser: curl, httpx, the CLI
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in DEFAULT_PORTS and _is_own(parts.netloc, own, parts.scheme)


__all__ = ["SameOrigin"]
