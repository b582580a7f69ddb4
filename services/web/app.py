"""The web gateway's HTTP side: the web client's files, its config and the ``/session`` WebSocket.

The routes stay thin: ``/session`` hands each WebSocket to
:class:`~duet.services.web.gateway.SessionGateway`, which alone knows
protobuf JSON and gRPC statuses. :class:`WebServer` runs the application on
a TCP port inside the caller's event loop (``duet web`` and ``duet up``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from duet.services.rpc.http import start_site
from duet.services.rpc.server import CannotListen
from duet.services.web.demo_regions import DemoRegions, UnknownRegion
from duet.services.web.gateway import Closed, SessionGateway

__all__ = ["STATIC_DIR", "WebServer", "build_app"]

logger = logging.getLogger("duet.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The web client's files, read once: a request names one of these or nothing.
STATIC_FILES = frozenset(p.name for p in STATIC_DIR.iterdir() if p.is_file() and not p.name.startswith("."))
# An SDP offer from Chromium is a few KB; nothing in the protocol comes near this.
MAX_FRAME_BYTES = 256 * 1024

_GATEWAY = web.AppKey("gateway", SessionGateway)
_REGIONS = web.AppKey("demo_regions", DemoRegions)
_STOPPING = web.AppKey("stopping", asyncio.Event)


async def _file(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    if name not in STATIC_FILES:
        raise web.HTTPNotFound(text=f"no file {name!r} here; the web client is at /")
    # The page is small and changes with the code: always revalidate.
    return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-cache"})


async def _config(request: web.Request) -> web.Response:
    regions = request.app[_REGIONS]
    return web.json_response({"demoRegions": [{"code": r.code, "name": r.name} for r in regions.regions]})


async def _session(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=30.0)
    await ws.prepare(request)
    address = request.remote or "127.0.0.1"
    asked = request.query.get("region", "")
    if asked:
        regions = request.app[_REGIONS]
        try:
            if not regions:
                raise UnknownRegion(
                    f"this gateway offers no demo regions (asked for {asked!r}); start it with --demo-regions"
                )
            address = regions.address_for(asked)
        except UnknownRegion as exc:
            await ws.send_str(Closed("INVALID_ARGUMENT", str(exc)).to_json())
            await ws.close()
            return ws
    await request.app[_GATEWAY].relay(ws, client_address=address, stopping=request.app[_STOPPING])
    return ws


async def _call(request: web.Request) -> web.Response:
    status, body = await request.app[_GATEWAY].get_call(request.match_info["call_id"])
    return web.Response(status=status, text=body, content_type="application/json")


def build_app(gateway: SessionGateway, demo_regions: DemoRegions | None = None) -> web.Application:
    """The gateway's aiohttp application (the caller owns ``gateway`` and closes it)."""
    app = web.Application()
    app[_GATEWAY] = gateway
    app[_REGIONS] = demo_regions or DemoRegions(())
    app[_STOPPING] = asyncio.Event()

    async def tell_sessions(app: web.Application) -> None:
        app[_STOPPING].set()  # every open relay sends its browser a closed frame and ends

    app.on_shutdown.append(tell_sessions)
    app.router.add_get("/session", _session)
    app.router.add_get("/config.json", _config)
    app.router.add_get("/calls/{call_id}", _call)
    app.router.add_get("/", _file)
    app.router.add_get("/{name}", _file)
    return app


class WebServer:
    """The gateway on ``listen`` (host:port, port 0 = any free), as an async context manager.

    ``async with WebServer(...) as url`` serves until the block ends, then
    tells every open session it is shutting down and closes the channel.
    Raises ``CannotListen`` when the address cannot be bound.
    """

    def __init__(self, matchmaker: str, *, listen: str = "127.0.0.1:8080", demo_regions: DemoRegions | None = None):
        self.matchmaker = matchmaker
        self.listen = listen
        self.demo_regions = demo_regions
        self.url = ""
        self.gateway: SessionGateway | None = None  # while serving
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> str:
        host, _, port_text = self.listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            port = int(port_text)
        except ValueError:
            raise CannotListen(f"cannot listen on {self.listen!r}: give HOST:PORT, e.g. 127.0.0.1:8080") from None
        self.gateway = SessionGateway(self.matchmaker)
        try:
            self._runner, base = await start_site(
                build_app(self.gateway, self.demo_regions), host, port, what="the web client", shutdown_timeout=5.0
            )
        except BaseException:
            await self._close()
            raise
        self.url = f"{base}/"
        logger.info("web client at %s (matchmaker %s)", self.url, self.matchmaker)
        return self.url

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.gateway is not None:
            await self.gateway.close()
            self.gateway = None
