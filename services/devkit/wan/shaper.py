"""Delay, jitter and loss applied to datagrams in user space (a test facility).

A :class:`LinkShaper` is one direction of one link: it drops each datagram
with the profile's loss probability and hands the rest on after the delay,
from one event-loop timer (``loop.call_at``), never a task per packet. A
:class:`LinkSet` keeps one shaper per remote address, and
:class:`EmulatedDatagramTransport` puts a LinkSet in front of an asyncio
datagram transport's ``sendto``. Every piece is installed only where a
profile is configured: when emulation is off none of this is in the path.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from duet.services.devkit.wan.profile import LinkProfile

__all__ = ["EmulatedDatagramTransport", "LinkCounters", "LinkSet", "LinkShaper"]

logger = logging.getLogger("duet.devkit.wan")

Address = Any  # what asyncio hands over: (host, port) or an IPv6 4-tuple
Deliver = Callable[[bytes, Address], None]
ProfileFor = Callable[[tuple[Any, Any]], LinkProfile | None]


@dataclass
class LinkCounters:
    """What a link did, for test assertions."""

    submitted: int = 0  # datagrams handed to the link
    dropped: int = 0  # lost on purpose (the profile's loss)
    delayed: int = 0  # held for later delivery
    delivered: int = 0  # handed on
    discarded: int = 0  # still held when the link closed

    def add(self, other: LinkCounters) -> None:
        self.submitted += other.submitted
        self.dropped += other.dropped
        self.delayed += other.delayed
        self.delivered += other.delivered
        self.discarded += other.discarded


class LinkShaper:
    """One direction of one emulated link."""

    def __init__(
        self,
        profile: LinkProfile,
        deliver: Deliver,
        *,
        salt: str = "",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.profile = profile
        self.counters = LinkCounters()
        self._deliver = deliver
        self._loop = loop or asyncio.get_running_loop()
        # The salt keeps links that share one seeded profile from losing the same packets.
        self._rng = random.Random(None if profile.seed is None else f"{profile.seed}/{salt}")
        # (due, arrival order, datagram, address): the order breaks ties, so equal times keep FIFO.
        self._held: list[tuple[float, int, bytes, Address]] = []
        self._order = itertools.count()
        self._last_due = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def submit(self, data: bytes | bytearray | memoryview, addr: Address) -> None:
        self.counters.submitted += 1
        if self._closed:
            self.counters.discarded += 1
            return
        p = self.profile
        if p.loss and self._rng.random() < p.loss:
            self.counters.dropped += 1
            return
        delay_ms = p.delay_ms + (self._rng.uniform(-p.jitter_ms, p.jitter_ms) if p.jitter_ms else 0.0)
        now = self._loop.time()
        due = now + max(delay_ms, 0.0) / 1000
        if not p.reorder:
            due = max(due, self._last_due)
            self._last_due = due
        if due <= now and not self._held:
            self.counters.delivered += 1
            self._deliver(bytes(data), addr)
            return
        # Copied: senders may reuse their buffer (the backbone relays a bytearray).
        heapq.heappush(self._held, (due, next(self._order), bytes(data), addr))
        self.counters.delayed += 1
        if self._timer is None or due < self._timer.when():
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(self._held[0][0], self._release)

    def _release(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._held and self._held[0][0] <= now:
            _, _, data, addr = heapq.heappop(self._held)
            self.counters.delivered += 1
            try:
                self._deliver(data, addr)
            except Exception:  # one datagram must not stop the others on this link
                logger.exception("emulated link could not deliver a datagram to %s", addr)
        if self._held:
            self._arm()

    @property
    def held(self) -> int:
        return len(self._held)

    def close(self) -> None:
        """Cancel the timer and forget what is held (counted as discarded)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.counters.discarded += len(self._held)
        self._held.clear()


class LinkSet:
    """One shaper per remote address, in one direction; addresses without a profile pass straight through.

    ``profile_for`` raises LookupError for an address it cannot place yet (an
    edge before its route table names a neighbour): that datagram passes
    unshaped and the address is asked about again, not remembered as unshaped.
    """

    def __init__(self, deliver: Deliver, profile_for: ProfileFor, *, salt: str = "") -> None:
        self._deliver = deliver
        self._profile_for = profile_for
        self._salt = salt
        self.links: dict[tuple[Any, Any], LinkShaper | None] = {}
        self._retired: list[LinkShaper] = []  # replaced by reset(), still releasing what they hold

    def submit(self, data: bytes | bytearray | memoryview, addr: Address) -> None:
        key = (addr[0], addr[1])
        try:
            shaper = self.links[key]
        except KeyError:
            try:
                profile = self._profile_for(key)
            except LookupError:  # a destination not known yet: unshaped, and asked again next time
                self._deliver(data, addr)  # type: ignore[arg-type]
                return
            shaper = None
            if profile is not None and profile.active:
                shaper = LinkShaper(profile, self._deliver, salt=self._salt)
            self.links[key] = shaper
        if shaper is None:
            self._deliver(data, addr)  # type: ignore[arg-type]
        else:
            shaper.submit(data, addr)

    def counters(self) -> LinkCounters:
        total = LinkCounters()
        for shaper in [*self.links.values(), *self._retired]:
            if shaper is not None:
                total.add(shaper.counters)
        return total

    def close(self) -> None:
        for shaper in [*self.links.values(), *self._retired]:
            if shaper is not None:
                shaper.close()

    def reset(self) -> None:
        """New datagrams ask ``profile_for`` again; those already held still leave as they would have."""
        self._retired.extend(s for s in self.links.values() if s is not None)
        self.links.clear()


class EmulatedDatagramTransport(asyncio.DatagramTransport):
    """A datagram transport whose ``sendto`` goes through emulated links, one per destination."""

    def __init__(
        self,
        inner: asyncio.DatagramTransport,
        profile_for: ProfileFor,
        *,
        salt: str = "send",
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.links = LinkSet(self._send_now, profile_for, salt=salt)
        self._on_close = on_close  # e.g. close the socket's receive-side links too

    def _send_now(self, data: bytes, addr: Address) -> None:
        self.inner.sendto(data, addr)

    def sendto(self, data: bytes | bytearray | memoryview, addr: Address = None) -> None:
        if addr is None:  # a connected socket: no per-destination link to pick
            self.inner.sendto(data)
            return
        self.links.submit(data, addr)

    def _close_links(self) -> None:
        self.links.close()
        if self._on_close is not None:
            self._on_close()

    def close(self) -> None:
        self._close_links()
        self.inner.close()

    def abort(self) -> None:
        self._close_links()
        self.inner.abort()

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        size: int = getattr(self.inner, "get_write_buffer_size", lambda: 0)()
        return size

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.inner.get_protocol()
