"""Awaiting what we cancelled, without swallowing our own cancellation.

``with contextlib.suppress(asyncio.CancelledError): await task`` after ``task.cancel()`` has a
race: if *our* task is cancelled while it waits there (the service stopping, a transfer
cancelling the call's task), that CancelledError is ours, and suppressing it leaves our task
running on, typically to wait for something that never comes. :func:`reap` swallows the
awaited thing's cancellation only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def reap(awaitable: Awaitable[Any], *also: type[BaseException]) -> None:
    """Await ``awaitable`` (a future we cancelled, or a coroutine such as ``wait_for``),
    ignoring its cancellation and the exceptions in ``also``; re-raise CancelledError when it
    is the current task that is being cancelled."""
    try:
        await awaitable
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except also:
        pass
