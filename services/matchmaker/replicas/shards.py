"""Shards: named groups of regions, each served by one replica at a time.

A user's shard is the one holding the region of their ingress edge. Users in
different shards never meet, so shards should follow the lines across which
matches are rare. ``--shards emea=Frankfurt,London;rest=*`` names two; the
default is one shard, ``world``, holding every region.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

DEFAULT_SHARD = "world"
WILDCARD = "*"
SHARD_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class ShardConfigError(ValueError):
    """A --shards value that cannot be used; str() says what to change."""


@dataclass(frozen=True)
class ShardMap:
    """Which shard each region is in (regions compared case-insensitively)."""

    shards: tuple[str, ...] = (DEFAULT_SHARD,)
    regions: dict[str, str] = field(default_factory=dict)  # lowercased region -> shard
    fallback: str = DEFAULT_SHARD  # the shard of a region listed nowhere

    def shard_of(self, region: str) -> str:
        return self.regions.get(region.strip().lower(), self.fallback)

    @property
    def single(self) -> bool:
        """One shard: every user is in it, whatever their region."""
        return len(self.shards) == 1

    def describe(self) -> str:
        parts = []
        for shard in self.shards:
            listed = sorted(r for r, s in self.regions.items() if s == shard)
            if shard == self.fallback:
                listed.append(WILDCARD)
            parts.append(f"{shard}={','.join(listed)}")
        return ";".join(parts)


def parse_shards(text: str) -> ShardMap:
    """``name=Region,Region;name=*`` -> ShardMap. ``*`` takes every region listed nowhere (default:
    the first shard); an empty text is the single ``world`` shard."""
    text = text.strip()
    if not text:
        return ShardMap()
    shards: list[str] = []
    regions: dict[str, str] = {}
    fallback = ""
    for part in text.split(";"):
        name, sep, listed = part.partition("=")
        name = name.strip()
        if not sep:
            raise ShardConfigError(f"'{part.strip()}' is not NAME=REGION,REGION (e.g. emea=Frankfurt,London)")
        if not SHARD_NAME_RE.match(name):
            raise ShardConfigError(
                f"shard name '{name}' must be 1-32 lowercase letters, digits, '_' or '-', starting with one of the first two"
            )
        if name in shards:
            raise ShardConfigError(f"shard '{name}' is named twice")
        shards.append(name)
        members = [r.strip() for r in listed.split(",") if r.strip()]
        if not members:
            raise ShardConfigError(f"shard '{name}' lists no region (give regions, or * for every other region)")
        for region in members:
            if region == WILDCARD:
                if fallback:
                    raise ShardConfigError(f"* is given to both '{fallback}' and '{name}'; one shard takes the rest")
                fallback = name
                continue
            key = region.lower()
            if key in regions:
                raise ShardConfigError(f"region '{region}' is in both '{regions[key]}' and '{name}'")
            regions[key] = name
    return ShardMap(shards=tuple(shards), regions=regions, fallback=fallback or shards[0])


def lock_key(name: str) -> int:
    """A stable 31-bit advisory-lock key for a name (never negative, so pg_locks shows it as is)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF
