"""G.711 μ-law (PCMU, PT 0) and A-law (PCMA, PT 8) with numpy lookup tables.

Bit-exact with the ITU-T G.711 reference as implemented in Sun's g711.c and CPython's
``audioop``: μ-law quantises the 16-bit sample shifted to 14 bits (bias 33, clip 8159),
A-law the sample shifted to 13 bits. Encoding is one fancy-index into a 65,536-entry table,
decoding one into a 256-entry table, so any array shape works: ``(160,)`` for one 20 ms frame,
``(n_calls, 160)`` for a whole tick of calls at once. PCMU<->PCMA goes through linear PCM and is
exposed as 256-byte ``bytes.translate`` tables.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    # index = sample as uint16 (two's complement), so build over int16 order then roll
    x = np.arange(-32768, 32768, dtype=np.int32) >> 2
    neg = x < 0
    mag = np.minimum(np.where(neg, -x, x), 8159) + 33
    mask = np.where(neg, 0x7F, 0xFF)
    seg = np.searchsorted(_SEG_UEND, mag, side="left")
    code = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code) ^ mask
    return np.roll(code.astype(np.uint8), -32768)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x = np.arange(-32768, 32768, dtype=np.int32) >> 3
    neg = x < 0
    mag = np.where(neg, -x - 1, x)
    mask = np.where(neg, 0x55, 0xD5)
    seg = np.searchsorted(_SEG_AEND, mag, side="left")
    s = np.minimum(seg, 7)
    quant = np.where(s < 2, mag >> 1, mag >> np.maximum(s, 1)) & 0xF
    code = np.where(seg >= 8, 0x7F, (s << 4) | quant) ^ mask
    return np.roll(code.astype(np.uint8), -32768)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


ULAW_ENCODE = _build_ulaw_encode()
"""μ-law code for every int16 sample, indexed by the sample viewed as uint16."""
ALAW_ENCODE = _build_alaw_encode()
"""A-law code for every int16 sample, indexed by the sample viewed as uint16."""
ULAW_DECODE = _build_ulaw_decode()
"""Linear int16 sample for each of the 256 μ-law codes."""
ALAW_DECODE = _build_alaw_decode()
"""Linear int16 sample for each of the 256 A-law codes."""
ULAW_TO_ALAW: bytes = ALAW_ENCODE[ULAW_DECODE.view(np.uint16)].tobytes()
"""``pcmu.translate(ULAW_TO_ALAW)`` transcodes a PCMU payload to PCMA."""
ALAW_TO_ULAW: bytes = ULAW_ENCODE[ALAW_DECODE.view(np.uint16)].tobytes()
"""``pcma.translate(ALAW_TO_ULAW)`` transcodes a PCMA payload to PCMU."""
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _as_index(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.uint16]:
    if samples.dtype != np.int16:
        raise TypeError(f"G.711 encode expects int16 samples, got {samples.dtype}")
    return samples.view(np.uint16)


def ulaw_encode(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """μ-law codes for int16 samples of any shape (e.g. ``(n_calls, 160)``)."""
    return ULAW_ENCODE[_as_index(samples)]


def alaw_encode(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """A-law codes for int16 samples of any shape."""
    return ALAW_ENCODE[_as_index(samples)]


def ulaw_decode(codes: npt.NDArray[np.uint8] | bytes) -> npt.NDArray[np.int16]:
    """Linear samples for μ-law codes (an array of any shape, or one payload as bytes)."""
    if isinstance(codes, bytes | bytearray | memoryview):
        codes = np.frombuffer(codes, dtype=np.uint8)
    return ULAW_DECODE[codes]


def alaw_decode(codes: npt.NDArray[np.uint8] | bytes) -> npt.NDArray[np.int16]:
    """Linear samples for A-law codes (an array of any shape, or one payload as bytes)."""
    if isinstance(codes, bytes | bytearray | memoryview):
        codes = np.frombuffer(codes, dtype=np.uint8)
    return ALAW_DECODE[codes]


def encode(samples: npt.NDArray[np.int16], codec: str) -> npt.NDArray[np.uint8]:
    """Encode by codec name: ``"PCMU"`` or ``"PCMA"`` (SDP encoding names, case-insensitive)."""
    name = codec.upper()
    if name == "PCMU":
        return ulaw_encode(samples)
    if name == "PCMA":
        return alaw_encode(samples)
    raise ValueError(f"unknown G.711 codec {codec!r}")


def decode(codes: npt.NDArray[np.uint8] | bytes, codec: str) -> npt.NDArray[np.int16]:
    """Decode by codec name: ``"PCMU"`` or ``"PCMA"``."""
    name = codec.upper()
    if name == "PCMU":
        return ulaw_decode(codes)
    if name == "PCMA":
        return alaw_decode(codes)
    raise ValueError(f"unknown G.711 codec {codec!r}")


def decode_payloads(payloads: list[bytes], codec: str) -> npt.NDArray[np.int16]:
    """Decode equal-length payloads of many calls in one lookup: ``(len(payloads), frame)``."""
    if not payloads:
        return np.zeros((0, 0), dtype=np.int16)
    codes = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(len(payloads), -1)
    return decode(codes, codec)


def ulaw_to_alaw(payload: bytes) -> bytes:
    """Transcode a PCMU payload to PCMA (one ``bytes.translate``)."""
    return payload.translate(ULAW_TO_ALAW)


def alaw_to_ulaw(payload: bytes) -> bytes:
    """Transcode a PCMA payload to PCMU."""
    return payload.translate(ALAW_TO_ULAW)


def float_to_int16(x: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    """Scale float samples in [-1, 1] to int16 with rounding and clipping."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 32767.0), -32768, 32767).astype(
        np.int16
    )
