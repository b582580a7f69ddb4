"""The greeter bot of ``duet up``: a simulated user who waits in the pool so that
``duet call`` (or any client) finds a partner, call after call, whatever its
partners do.

One DuetClient is one session with one warm leg. After a call that failed the
bot decides by what is left of it:

- the call ended under us (the partner left or pressed next) and nothing says
  the stream or the leg is gone: the same session looks again, with Next if
  the server still has us in a call (FindPartner there would end the stream);
- the Session stream is over, the leg failed or closed, or no partner frame
  came within the frame timeout: a fresh client (new session, new leg). A
  missing first frame cannot tell a partner who sends nothing from a receiver
  of ours that has stopped (aiortc ends a transport's receive loop for good on
  RTP it cannot parse, while the connection may still say "connected"). A new
  session costs well under a second; a dead receiver would cost every later
  partner their call.

Failures in a row back off (0.25 s, doubling, at most 10 s); a call whose
partner frame arrives resets that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from duet.services.auth.secrets import SECRETS_ENV, SECRETS_FILE_NAME
from duet.services.auth.sources import TokenSource
from duet.services.client import DuetClient, DuetClientError
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo
from duet.services.devkit.synthetic_media import synthetic_client

logger = logging.getLogger("duet.greeter")

BOT_USER_ID = "greeter-bot"
BOT_DISPLAY_NAME = "greeter bot"
BOT_CAMERA_TAG = 999


@dataclass
class Backoff:
    """Delay before the next try after failures in a row."""

    first_s: float = 0.25
    max_s: float = 10.0
    failures: int = 0

    def failed(self) -> float:
        self.failures += 1
        return min(self.max_s, self.first_s * 2.0 ** (self.failures - 1))

    def reset(self) -> None:
        self.failures = 0


@dataclass
class GreeterStats:
    sessions: int = 0  # clients built: the first one, then one per rebuild
    calls: int = 0  # calls in which the partner's first frame arrived
    failed_calls: int = 0  # find/next that ended without a partner frame
    rebuilds: list[str] = field(default_factory=list)  # why each session was given up


class Greeter:
    """The bot: ``run()`` greets partners until cancelled, and never ends on its own."""

    def __init__(
        self,
        matchmaker: str,
        *,
        client_ip: str | None = None,
        frame_timeout: float = 10.0,
        backoff: Backoff | None = None,
        token: TokenSource | None = None,
    ) -> None:
        """``token``: the bot user's token source (asked for each new session)."""
        self.matchmaker = matchmaker
        self.token = token
        self.client_ip = client_ip
        self.frame_timeout = frame_timeout
        self.backoff = backoff or Backoff()
        self.stats = GreeterStats()

    @classmethod
    def for_cluster(cls, info: ClusterInfo, regions: Sequence[str]) -> Greeter:
        # Located in the last region, so it is a cross-backbone call for most callers.
        return cls(
            info.matchmaker_for(""), client_ip=DEMO_CLIENT_IPS.get(regions[-1]), token=info.user_tokens(BOT_USER_ID)
        )

    def _new_client(self) -> DuetClient:
        """The one place the bot builds its client."""
        return synthetic_client(
            self.matchmaker,
            BOT_USER_ID,
            BOT_DISPLAY_NAME,
            tag=BOT_CAMERA_TAG,
            client_ip=self.client_ip,
            frame_timeout=self.frame_timeout,
            match_timeout=None,  # waiting in the pool is the job; a timeout there would leave us queued
            token=self.token,
        )

    async def run(self) -> None:
        """One session after another: a session serves until it is no good, then a fresh one."""
        while True:
            client = self._new_client()
            self.stats.sessions += 1
            try:
                why = await self._serve(client)
            except Exception as exc:  # a bug rather than a partner: still no reason to stop greeting
                logger.exception("greeter bot: unexpected error")
                why = f"unexpected error {exc!r}"
            finally:
                await _leave(client)
            self.stats.rebuilds.append(why)
            delay = self.backoff.failed()
            logger.warning("greeter bot: %s; starting a new session in %.2f s", why, delay)
            await asyncio.sleep(delay)

    async def _serve(self, client: DuetClient) -> str:
        """Greet partners on one session until it is no good; returns why it is not."""
        try:
            await client.connect()
        except DuetClientError as exc:
            return f"could not connect ({exc})"
        logger.info("greeter bot: connected, waiting for a partner")
        while True:
            try:
                # FindPartner while the server still has us in a call would end the stream.
                result = await (client.next() if client.in_call else client.find_partner())
            except DuetClientError as exc:
                if exc.reason is not None and exc.reason.startswith("expired"):
                    # Nobody came within the ticket's lifetime: that is waiting, not failing.
                    logger.info("greeter bot: the wait expired; queueing again")
                    continue
                self.stats.failed_calls += 1
                # A gRPC status: the stream is over. No call-end reason: a timeout or the leg
                # failed/closed, and our receiver may be dead. A reason: the call ended under us,
                # and the loop head picks Next or FindPartner by what the server says now.
                if exc.code is not None:
                    return f"the Session stream is over ({exc})"
                if exc.reason is None:
                    return f"the leg is suspect: {exc}"
                delay = self.backoff.failed()
                logger.info("greeter bot: the call ended before it connected (%s); looking again", exc.reason)
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            self.stats.calls += 1
            logger.info(
                "greeter bot: in a call with %s (connect %.1f ms)",
                result.partner_display_name,
                result.connect_ms if result.connect_ms is not None else float("nan"),
            )
            try:
                reason = await client.wait_call_ended()
            except DuetClientError as exc:
                return f"lost the call: {exc}"
            logger.info("greeter bot: the call ended (%s)", reason)


async def _leave(client: DuetClient) -> None:
    try:
        await client.leave()
    except Exception:  # leaving must not end the bot either
        logger.exception("greeter bot: leaving the old session failed")


async def serve_forever(info: ClusterInfo, regions: Sequence[str], *, stop: asyncio.Event, bot: bool = True) -> None:
    """Serve until ``stop``; a greeter bot waits in the pool so `duet call` finds someone."""
    print(f"\nserving: matchmaker at {info.matchmaker} (Ctrl-C to stop)")
    task = None
    if bot:
        # `duet call` mints its token from .duet/auth-secrets.json; name the file when it is elsewhere.
        default = (Path(".duet") / SECRETS_FILE_NAME).absolute()
        secrets = "" if info.secrets_path == default else f"{SECRETS_ENV}={info.secrets_path} "
        print(
            f"a greeter bot is waiting; in another terminal: {secrets}.venv/bin/duet call --matchmaker {info.matchmaker}",
            flush=True,
        )
        task = asyncio.create_task(Greeter.for_cluster(info, regions).run(), name="greeter bot")
    try:
        await stop.wait()
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


__all__ = ["BOT_CAMERA_TAG", "BOT_USER_ID", "Backoff", "Greeter", "GreeterStats", "serve_forever"]
