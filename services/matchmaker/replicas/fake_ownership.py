"""Shard ownership in memory: replicas of one test process sharing one registry.

``kill()`` stands for a replica whose database connection died: its shards
are free at once, as PostgreSQL frees a dead session's advisory locks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from duet.services.matchmaker.replicas.ownership import OwnershipChange, ShardOwner, fair_share


@dataclass
class ShardRegistry:
    """What the database would hold: each shard's owner, and which replicas are alive."""

    owners: dict[str, ShardOwner] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)


class InMemoryShardOwnership:
    def __init__(self, registry: ShardRegistry, replica_id: str, address: str, shards: tuple[str, ...]) -> None:
        self.registry = registry
        self.replica_id = replica_id
        self.address = address
        self.shards = shards
        self._owned: set[str] = set()
        self._alive = True
        registry.live.add(replica_id)

    def owns(self, shard: str) -> bool:
        return shard in self._owned

    def owner_of(self, shard: str) -> ShardOwner | None:
        return self.registry.owners.get(shard)

    async def poll(self) -> OwnershipChange:
        await asyncio.sleep(0)
        if not self._alive:
            lost = tuple(sorted(self._owned))
            self._owned.clear()
            return OwnershipChange(lost=lost)
        mine = {s for s, o in self.registry.owners.items() if o.replica_id == self.replica_id}
        lost = tuple(sorted(self._owned - mine))
        self._owned.difference_update(lost)
        share = fair_share(len(self.shards), len(self.registry.live))
        acquired = []
        for shard in self.shards:
            if len(self._owned) >= share:
                break
            if shard not in self.registry.owners:
                self.registry.owners[shard] = ShardOwner(shard, self.replica_id, self.address)
                self._owned.add(shard)
                acquired.append(shard)
        return OwnershipChange(acquired=tuple(acquired), lost=lost)

    def kill(self) -> None:
        """The replica's connection died: its shards are free now; its next poll reports them lost."""
        self._alive = False
        self.registry.live.discard(self.replica_id)
        for shard, owner in list(self.registry.owners.items()):
            if owner.replica_id == self.replica_id:
                del self.registry.owners[shard]

    async def close(self) -> None:
        self.kill()
        self._owned.clear()
