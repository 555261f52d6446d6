"""Messages are kept for ``[voicemail] keep_days`` and then deleted; nothing else is touched."""

from __future__ import annotations

import os
import time
from pathlib import Path

from voicemail.box import expire


def test_messages_older_than_keep_days_are_deleted_and_others_kept(tmp_path: Path) -> None:
    now = time.time()
    old = tmp_path / "case-1-1000.wav"
    recent = tmp_path / "case-2-2000.wav"
    other = tmp_path / "greeting.wav"  # not a message: never deleted
    for p in (old, recent, other):
        p.write_bytes(b"RIFF")
    os.utime(old, (now - 31 * 86400, now - 31 * 86400))
    os.utime(recent, (now - 29 * 86400, now - 29 * 86400))
    os.utime(other, (now - 400 * 86400, now - 400 * 86400))
    removed = expire(tmp_path, 30, now=now)
    assert removed == [old]
    assert not old.exists() and recent.exists() and other.exists()
