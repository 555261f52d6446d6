"""G.711 tables against an independent scalar implementation of the reference algorithm."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from media_gateway.rtp import g711


def ref_ulaw(sample: int) -> int:
    """G.711 μ-law, written from the segment description: 14-bit magnitude, bias 33, clip 8159."""
    v = sample >> 2
    sign = 0x80 if v < 0 else 0
    mag = min(-v if v < 0 else v, 8159) + 33
    exponent = mag.bit_length() - 6  # segment: mag < 64 -> 0, < 128 -> 1, ...
    if exponent < 0:
        exponent = 0
    if exponent > 7:
        return 0x7F ^ (0x7F if sign else 0xFF)
    mantissa = (mag >> (exponent + 1)) & 0x0F
    return ((exponent << 4) | mantissa | sign) ^ 0xFF


def ref_alaw(sample: int) -> int:
    """G.711 A-law: 13-bit magnitude (one's complement for negatives), even bits inverted."""
    v = sample >> 3
    if v >= 0:
        mag, sign = v, 0x80
    else:
        mag, sign = -v - 1, 0
    if mag >= 4096:
        return (0x7F | sign) ^ 0x55
    exponent = max(mag.bit_length() - 5, 0)
    mantissa = (mag >> (exponent if exponent > 1 else 1)) & 0x0F
    return ((exponent << 4) | mantissa | sign) ^ 0x55


def ref_ulaw_decode(code: int) -> int:
    u = ~code & 0xFF
    exponent, mantissa = (u >> 4) & 7, u & 0x0F
    magnitude = ((mantissa << 3) + 0x84 << exponent) - 0x84
    return -magnitude if u & 0x80 else magnitude


def ref_alaw_decode(code: int) -> int:
    a = code ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    if exponent == 0:
        magnitude = (mantissa << 4) + 8
    else:
        magnitude = ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if a & 0x80 else -magnitude


ALL = np.arange(-32768, 32768, dtype=np.int16)


def test_ulaw_encode_all_65536_inputs() -> None:
    expected = np.array([ref_ulaw(int(s)) for s in ALL], dtype=np.uint8)
    assert np.array_equal(g711.ulaw_encode(ALL), expected)


def test_alaw_encode_all_65536_inputs() -> None:
    expected = np.array([ref_alaw(int(s)) for s in ALL], dtype=np.uint8)
    assert np.array_equal(g711.alaw_encode(ALL), expected)


def test_decode_all_256_codes() -> None:
    codes = np.arange(256, dtype=np.uint8)
    assert g711.ulaw_decode(codes).tolist() == [ref_ulaw_decode(c) for c in range(256)]
    assert g711.alaw_decode(codes).tolist() == [ref_alaw_decode(c) for c in range(256)]


def test_matches_audioop_where_available() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:  # Python 3.13 removed it; the scalar reference above still runs
            return
    data = ALL.tobytes()
    assert g711.ulaw_encode(ALL).tobytes() == audioop.lin2ulaw(data, 2)
    assert g711.alaw_encode(ALL).tobytes() == audioop.lin2alaw(data, 2)
    assert g711.ulaw_decode(bytes(range(256))).tobytes() == audioop.ulaw2lin(bytes(range(256)), 2)


def test_known_codes() -> None:
    zero = np.zeros(1, dtype=np.int16)
    assert g711.ulaw_encode(zero)[0] == 0xFF == g711.ULAW_SILENCE
    assert g711.alaw_encode(zero)[0] == 0xD5 == g711.ALAW_SILENCE
    extremes = np.array([32767, -32768], dtype=np.int16)
    assert g711.ulaw_encode(extremes).tolist() == [0x80, 0x00]
    assert g711.alaw_encode(extremes).tolist() == [0xAA, 0x2A]
    assert g711.ulaw_decode(b"\x80\x00\xff\x7f").tolist() == [32124, -32124, 0, 0]
    assert g711.alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]


def test_batched_2d_equals_per_frame() -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(-32768, 32768, size=(300, 160), dtype=np.int16)
    batch = g711.encode(frames, "pcmu")
    assert batch.shape == (300, 160)
    assert all(np.array_equal(batch[i], g711.ulaw_encode(frames[i])) for i in range(300))
    payloads = [row.tobytes() for row in g711.encode(frames, "PCMA")]
    decoded = g711.decode_payloads(payloads, "PCMA")
    assert np.array_equal(decoded, g711.alaw_decode(g711.alaw_encode(frames)))
    assert g711.decode_payloads([], "PCMU").shape == (0, 0)


def test_round_trip_error_is_within_quantisation() -> None:
    x = np.arange(-32768, 32768, 7, dtype=np.int16)
    for codec in ("PCMU", "PCMA"):
        y = g711.decode(g711.encode(x, codec), codec).astype(np.int32)
        err = np.abs(y - x)
        assert np.all(err <= np.maximum(16, np.abs(x.astype(np.int32)) // 16)), codec


def test_transcoding_tables() -> None:
    codes = bytes(range(256))
    via_linear = g711.alaw_encode(g711.ulaw_decode(codes)).tobytes()
    assert g711.ulaw_to_alaw(codes) == via_linear
    assert g711.alaw_to_ulaw(codes) == g711.ulaw_encode(g711.alaw_decode(codes)).tobytes()
    assert g711.ulaw_to_alaw(b"\xff") == b"\xd5"
    # A-law -> μ-law -> A-law through linear PCM: 240 of 256 codes come back, the rest land on
    # the neighbouring level (G.711's own transcoding tables differ slightly from this path)
    back = g711.ulaw_to_alaw(g711.alaw_to_ulaw(codes))
    assert sum(a != b for a, b in zip(back, codes, strict=True)) == 16
    orig = g711.alaw_decode(codes).astype(np.int32)
    again = g711.alaw_decode(back).astype(np.int32)
    assert np.all(np.abs(orig - again) <= np.abs(orig) // 8)


def test_errors() -> None:
    with pytest.raises(TypeError, match="expects int16 samples, got float64"):
        g711.ulaw_encode(np.zeros(4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("unknown G.711 codec 'G722'")):
        g711.encode(np.zeros(4, dtype=np.int16), "G722")
    with pytest.raises(ValueError, match=re.escape("unknown G.711 codec")):
        g711.decode(b"\x00", "opus")


def test_float_to_int16_clips() -> None:
    assert g711.float_to_int16(np.array([0.0, 1.0, -1.5, 0.5])).tolist() == [
        0,
        32767,
        -32768,
        16384,
    ]
