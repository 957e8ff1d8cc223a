"""How large a WebSocket message a client may send, by what it is: the limit follows the connection's state.

Before `welcome` a client can only say hello, so its messages are small; a
tracker only ever sends small control frames; a trainer's result carries the
gradient, 4 bytes per parameter of its project, plus a few fields. Keeping
every other message small is what bounds the master's memory under a flood
of connections (ws_protocol.py refuses a frame over the limit from its
header). `max_frame_bytes` stays the ceiling of them all.
"""

from __future__ import annotations

from mlitb.master.settings import Settings


def message_limit(settings: Settings, role: str | None = None, param_count: int | None = None) -> int:
    """Bytes a message may have: `role` None before welcome."""
    control = min(settings.max_control_bytes, settings.max_frame_bytes)
    if role != "trainer" or param_count is None:
        return control
    return min(settings.max_frame_bytes, max(control, 4 * param_count + settings.result_overhead_bytes))


def refusal_text(size: int | None, limit: int, helloed: bool) -> str:
    """What a client that sent too much is told (the frame is never read)."""
    what = f"a message of {size} bytes" if size is not None else "a message"
    why = ("a trainer's result is 4 bytes per parameter plus a little" if helloed
           else "send 'hello' first: before 'welcome' messages are small")
    return f"{what} exceeds this connection's limit of {limit} bytes ({why})"
