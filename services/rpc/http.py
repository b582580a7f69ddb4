"""Serving an aiohttp application on a local port, for the services' HTTP endpoints.

The web gateway and the metrics endpoints bind the same way and fail the same
way: no SO_REUSEPORT (a second service on a taken port must fail, not share it
silently), and a port that cannot be bound is a ``CannotListen`` in words.
"""

from __future__ import annotations

import errno

from aiohttp import web

from duet.services.rpc.server import CannotListen

__all__ = ["start_site"]


async def start_site(
    app: web.Application, host: str, port: int, *, what: str, shutdown_timeout: float
) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on host:port (0: any free port); the runner (the caller cleans it up) and
    the base URL, e.g. ``http://127.0.0.1:8080``. ``what`` names the service in errors."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, access_log=None, handle_signals=False)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_port=False)
        try:
            await site.start()
        except OSError as exc:
            why = "the port is taken" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc)).lower()
            raise CannotListen(f"cannot serve {what} on {host}:{port}: {why}") from exc
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return runner, f"http://{shown}:{bound_port}"
