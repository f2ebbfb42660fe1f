"""``recon api [--host 127.0.0.1] [--port 8000] [--token T]``: the REST API on uvicorn.

It serves the engine of the same settings and database as the CLI and the
dashboard, and runs its background work (batch runner, cache cleanup, monitor
sampler) until stopped with Ctrl-C or SIGTERM; deferred writes are flushed then.
Listening beyond the loopback interface needs a token (``--token``,
``RECON_API_TOKEN`` or ``[api] token``): POST requests must then carry
``Authorization: Bearer <token>``. Without a token, cross-site POSTs (403) and
Host headers other than the listening address or localhost (421) are refused
(:mod:`engine.api.guard`).
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.cli.core import Context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("api", help="serve the REST API (FastAPI on uvicorn)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument(
        "--token", help="bearer token required by POST requests (or RECON_API_TOKEN)"
    )
    parser.set_defaults(handler=cmd_api)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names the loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def cmd_api(args: argparse.Namespace, ctx: Context) -> int:
    import uvicorn

    from engine.api import create_app

    api = ctx.settings.with_values("api", host=args.host, port=args.port, token=args.token).api
    if not api.token and not is_loopback(api.host):
        raise ConfigError(
            "host",
            api.host,
            "refusing to listen beyond 127.0.0.1 without a token: "
            "give --token, RECON_API_TOKEN or [api] token in the settings file",
        )
    console = ctx.console()
    console.start_background()
    app = create_app(console, token=api.token, max_body_bytes=api.max_body_bytes)
    # uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises the signal again
    # for the previous handler: both end the command normally (the console is then
    # closed and flushed by the CLI).
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.run(app, host=api.host, port=api.port, log_level="info")
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


class _Stopped(Exception):
    """SIGTERM arrived: stop serving and close the engine."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped
