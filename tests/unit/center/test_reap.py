"""``reap``: awaiting a task we cancelled swallows its cancellation, never ours (a call's task
that swallowed its own cancellation waited forever when the service stopped)."""

from __future__ import annotations

import asyncio

import pytest

from hotline.center.reap import reap


async def test_the_cancelled_task_is_reaped_and_we_carry_on() -> None:
    child = asyncio.ensure_future(asyncio.sleep(10))
    await asyncio.sleep(0)
    child.cancel()
    await reap(child)
    assert child.cancelled()


async def test_our_own_cancellation_while_reaping_goes_through() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:  # takes a while to finish after its cancel
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await release.wait()
            raise

    after: list[str] = []

    async def parent() -> None:
        child = asyncio.ensure_future(stubborn())
        await asyncio.sleep(0)
        child.cancel()
        await reap(child)
        after.append("went on")  # what the old code did: then waited for a call that was over
        await asyncio.sleep(10)

    task = asyncio.ensure_future(parent())
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()  # the service stops while parent reaps its child
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert after == []


async def test_the_listed_exceptions_are_ignored_others_are_not() -> None:
    async def fails(exc: BaseException) -> None:
        raise exc

    await reap(fails(TimeoutError()), TimeoutError)
    with pytest.raises(ValueError):
        await reap(fails(ValueError()), TimeoutError)
