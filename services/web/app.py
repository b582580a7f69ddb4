"""The web gateway's HTTP side: the web client's files, its config and the ``/session`` WebSocket.

The routes stay thin: ``/session`` hands each WebSocket to
:class:`~duet.services.web.gateway.SessionGateway`, which alone knows
protobuf JSON and gRPC statuses. :class:`WebServer` runs the application on
a TCP port inside the caller's event loop (``duet web`` and ``duet up``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from duet.services.auth.bearer import parse_bearer
from duet.services.auth.tokens import mint_user_token
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
_GUEST_SECRET = web.AppKey("guest_token_secret", bytes)
# A guest token outlives the page load by little: the page asks for a new one for each session.
GUEST_TOKEN_TTL_S = 15 * 60


async def _file(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    if name not in STATIC_FILES:
        raise web.HTTPNotFound(text=f"no file {name!r} here; the web client is at /")
    # The page is small and changes with the code: always revalidate.
    return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-cache"})


async def _config(request: web.Request) -> web.Response:
    regions = request.app[_REGIONS]
    return web.json_response(
        {
            "demoRegions": [{"code": r.code, "name": r.name} for r in regions.regions],
            "guestTokens": _GUEST_SECRET in request.app,
        }
    )


async def _guest_token(request: web.Request) -> web.Response:
    """Development sign-in: a short-lived user token for a fresh guest user id.

    A browser cannot hold the app's secret, so something that does must sign it
    in. In a local cluster that is this endpoint; a production deployment
    replaces it with its own login, which mints the token for the real user.
    """
    secret = request.app.get(_GUEST_SECRET)
    if secret is None:
        raise web.HTTPNotFound(
            text="this gateway signs in no guests: the app's own login gives the page its token (docs/client-guide.md)"
        )
    user_id = f"web-{secrets.token_hex(4)}"
    now = time.time()
    token = mint_user_token(secret, user_id, ttl_s=GUEST_TOKEN_TTL_S, now=now)
    return web.json_response(
        {"token": token, "userId": user_id, "expiresAt": int(now) + GUEST_TOKEN_TTL_S},
        headers={"Cache-Control": "no-store"},
    )


def _request_token(request: web.Request) -> str:
    """The caller's token: the Authorization header, else (a browser's WebSocket cannot set headers) ?token=."""
    return parse_bearer(request.headers.get("Authorization", "")) or request.query.get("token", "")


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
    await request.app[_GATEWAY].relay(
        ws, client_address=address, token=_request_token(request), stopping=request.app[_STOPPING]
    )
    return ws


async def _call(request: web.Request) -> web.Response:
    status, body = await request.app[_GATEWAY].get_call(request.match_info["call_id"], _request_token(request))
    return web.Response(status=status, text=body, content_type="application/json")


async def _friends(request: web.Request) -> web.Response:
    status, body = await request.app[_GATEWAY].list_friends(_request_token(request))
    return web.Response(status=status, text=body, content_type="application/json")


async def _remove_friend(request: web.Request) -> web.Response:
    gateway = request.app[_GATEWAY]
    status, body = await gateway.remove_friend(request.match_info["user_id"], _request_token(request))
    return web.Response(status=status, text=body, content_type="application/json")


def build_app(
    gateway: SessionGateway, demo_regions: DemoRegions | None = None, *, guest_token_secret: bytes | None = None
) -> web.Application:
    """The gateway's aiohttp application (the caller owns ``gateway`` and closes it).

    ``guest_token_secret``: the user-token secret, for development only: ``POST /token``
    then signs any visitor in as a fresh guest (a local cluster has no login of its own).
    """
    app = web.Application()
    app[_GATEWAY] = gateway
    app[_REGIONS] = demo_regions or DemoRegions(())
    app[_STOPPING] = asyncio.Event()
    if guest_token_secret is not None:
        app[_GUEST_SECRET] = guest_token_secret

    async def tell_sessions(app: web.Application) -> None:
        app[_STOPPING].set()  # every open relay sends its browser a closed frame and ends

    app.on_shutdown.append(tell_sessions)
    app.router.add_get("/session", _session)
    app.router.add_get("/config.json", _config)
    app.router.add_get("/calls/{call_id}", _call)
    app.router.add_get("/friends", _friends)
    app.router.add_delete("/friends/{user_id}", _remove_friend)
    app.router.add_post("/token", _guest_token)
    app.router.add_get("/", _file)
    app.router.add_get("/{name}", _file)
    return app


class WebServer:
    """The gateway on ``listen`` (host:port, port 0 = any free), as an async context manager.

    ``async with WebServer(...) as url`` serves until the block ends, then
    tells every open session it is shutting down and closes the channel.
    Raises ``CannotListen`` when the address cannot be bound.
    """

    def __init__(
        self,
        matchmaker: str | Sequence[str],
        *,
        listen: str = "127.0.0.1:8080",
        demo_regions: DemoRegions | None = None,
        guest_token_secret: bytes | None = None,
    ):
        """``matchmaker``: every matchmaker replica's address (``"a:1,b:2"`` or a list): a session is
        opened on the next one when one is unavailable. ``guest_token_secret``: development sign-in of
        guests (see ``build_app``); None: off."""
        self.matchmaker = matchmaker
        self.guest_token_secret = guest_token_secret
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
                build_app(self.gateway, self.demo_regions, guest_token_secret=self.guest_token_secret),
                host,
                port,
                what="the web client",
                shutdown_timeout=5.0,
            )
        except BaseException:
            await self._close()
            raise
        self.url = f"{base}/"
        logger.info("web client at %s (matchmaker %s)", self.url, ", ".join(self.gateway.matchmakers))
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
