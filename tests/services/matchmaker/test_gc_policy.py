"""The matchmaker's collector policy on this interpreter's real collector: what it freezes, what a
frozen object still gets (reference counting), what only a reclaim frees, and when it reclaims."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from duet.services.matchmaker.gc_policy import FrozenHeap, GcPolicy


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    """Two objects referring to each other, unreachable once this returns (only the cycle collector frees them)."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def test_running_freezes_the_heap_and_gives_it_back_after() -> None:
    assert gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    async with FrozenHeap(GcPolicy(young_threshold=12_345)).running() as heap:
        assert gc.get_freeze_count() > 0
        assert heap.stats.reclaims == 1  # one full collection at start-up
        assert gc.get_threshold() == (12_345, *thresholds[1:])
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


async def test_the_background_task_freezes_what_survived_and_stops_with_the_block() -> None:
    async with FrozenHeap(GcPolicy(freeze_every_s=0.01)).running() as heap:
        before = gc.get_freeze_count()
        kept = [[i] for i in range(5000)]  # lists are tracked by the collector
        for _ in range(100):
            await asyncio.sleep(0.01)
            if heap.stats.freezes:
                break
        assert heap.stats.freezes >= 1 and heap.stats.reclaims == 1
        assert gc.get_freeze_count() >= before + len(kept)
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == "gc freeze"]
        assert len(tasks) == 1
    assert tasks[0].done()


async def test_a_frozen_object_is_still_freed_by_reference_counting() -> None:
    async with FrozenHeap().running() as heap:
        node = Node()
        ref = weakref.ref(node)
        heap.tick()  # frozen now
        del node
        assert ref() is None


async def test_frozen_cyclic_garbage_stays_until_a_reclaim() -> None:
    async with FrozenHeap().running() as heap:
        gc.disable()  # no automatic collection between making the cycle and freezing it
        try:
            ref = cycle()
            heap.tick()
        finally:
            gc.enable()
        gc.collect()
        assert ref() is not None  # the memory cost of the policy: out of the collector's sight
        found = heap.reclaim()
        assert ref() is None and found >= 2


async def test_it_reclaims_once_the_interval_has_passed_and_only_then() -> None:
    async with FrozenHeap(GcPolicy(freeze_every_s=0.01, reclaim_every_s=0.2)).running() as heap:
        heap.tick()
        assert heap.stats.reclaims == 1 and heap.stats.freezes == 1  # too soon: a freeze
        gc.disable()  # only the reclaim may find the cycle
        try:
            ref = cycle()
            heap.tick()
            assert ref() is not None
            await asyncio.sleep(0.25)
            heap.tick()
        finally:
            gc.enable()
        assert heap.stats.reclaims >= 2 and ref() is None


async def test_one_owner_per_process() -> None:
    async with FrozenHeap().running():
        with pytest.raises(RuntimeError, match="already running"):
            async with FrozenHeap().running():
                pass
    async with FrozenHeap().running():  # free again once the first is over
        pass


def test_a_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="freeze_every_s"):
        GcPolicy(freeze_every_s=0)
    with pytest.raises(ValueError, match="reclaim_every_s"):
        GcPolicy(freeze_every_s=2, reclaim_every_s=1)
    with pytest.raises(ValueError, match="young_threshold"):
        GcPolicy(young_threshold=0)
