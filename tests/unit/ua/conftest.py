"""The ``ua`` fixture: a started :class:`harness.UaHarness`, closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from harness import UaHarness


@pytest.fixture
async def ua_h() -> AsyncIterator[UaHarness]:
    h = await UaHarness().start()
    try:
        yield h
    finally:
        await h.close()
    assert h.wire.errors == [], "the user agent raised while handling an event"
