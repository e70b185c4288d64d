"""The garbage-collection policy: frozen objects are left out of collections until the
hourly reset, and nothing unreachable survives a freeze or a reset."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Iterator

import pytest

from meshcall.collector import Collector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    gc.unfreeze()


def test_freeze_collects_garbage_first_then_freezes_the_living(collector: Collector) -> None:
    dead = cycle()  # garbage already: a freeze must not keep it
    assert collector.freeze() >= 2
    assert dead() is None
    assert gc.get_freeze_count() > 0


def test_frozen_objects_are_skipped_until_the_reset(collector: Collector) -> None:
    holder = [Node(), Node()]
    holder[0].other, holder[1].other = holder[1], holder[0]
    ref = weakref.ref(holder[0])
    collector.freeze()
    holder.clear()  # the cycle becomes garbage after it was frozen
    gc.collect()
    assert ref() is not None, "an ordinary collection walks only unfrozen objects"
    assert collector.reset() >= 2
    assert ref() is None
    assert gc.get_freeze_count() > 0, "the reset freezes again"


def test_stop_unfreezes(collector: Collector) -> None:
    collector.freeze()
    collector.stop()
    assert gc.get_freeze_count() == 0


def test_start_freezes_and_keeps_freezing_on_the_loop() -> None:
    async def main() -> list[int]:
        c = Collector(freeze_every=0.05)
        ticks: list[int] = []
        original = c.freeze
        c.freeze = lambda: ticks.append(original()) or 0  # type: ignore[method-assign]
        c.start()
        assert gc.get_freeze_count() > 0
        deadline = asyncio.get_running_loop().time() + 5
        while len(ticks) < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        c.stop()
        assert gc.get_freeze_count() == 0
        return ticks

    ticks = asyncio.run(main())
    assert len(ticks) >= 3  # the start plus periodic freezes
