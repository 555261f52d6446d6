"""Pure media cores (no sockets, no asyncio; time is passed in).

packet (RFC 3550 §5.1), rtcp (§6), stats (App. A), g711 (numpy tables), dtmf (RFC 4733, SIP
INFO), inband (Q.24-style DTMF detector, batched across calls), jitter (adaptive playout buffer).
"""
