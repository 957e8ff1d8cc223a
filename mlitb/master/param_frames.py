"""The `params` frames of one iteration: one encode per parameter codec in use, shared by its clients.

Float32 clients get today's frame, built once. A delta codec's clients get
either the delta against the previous iteration (those whose base the master
knows: they answered the previous iteration's work, so they held its
parameters) or the full float32 frame of the mirror (everyone else); each of
the two is built at most once per iteration (codecs.ParamsStream keeps the
mirror). Pure: no sockets, tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlitb.codecs import DEFAULT_FULL_EVERY, ParamsPayload, ParamsStream, decode_vector
from mlitb.protocol import coded_params_frame, f32_bytes, params_frame


@dataclass
class ParamFrames:
    full_every: int = DEFAULT_FULL_EVERY
    iteration: int | None = None
    params: np.ndarray | None = field(default=None, repr=False)
    streams: dict[str, ParamsStream] = field(default_factory=dict)
    _frames: dict[tuple[str, int | None], bytes] = field(default_factory=dict, repr=False)
    encodes: int = 0  # frames built so far (tests check it is per codec, not per client)

    def advance(self, iteration: int, params: np.ndarray, codecs: set[str]) -> None:
        """A new iteration's parameters; `codecs` are those of the clients that will get frames."""
        self.iteration, self.params = iteration, params
        self._frames.clear()
        for codec in codecs - {"f32"}:
            stream = self.streams.setdefault(codec, ParamsStream(codec, full_every=self.full_every))
            stream.advance(iteration, params)
        for codec in set(self.streams) - codecs:
            del self.streams[codec]  # unused this iteration: its chain breaks, its next frame is full

    def frame_for(self, codec: str, base: int | None) -> bytes:
        """The frame for a client using `codec` that holds the parameters of iteration `base` (None: unknown)."""
        if self.iteration is None or self.params is None:
            raise RuntimeError("advance() first")
        if codec == "f32" or codec not in self.streams:
            return self._cached(("f32", None), lambda: params_frame(self.iteration, self.params))
        payload = self.streams[codec].payload_for(base)
        return self._cached((codec if payload.base is not None else f"{codec}:full", payload.base),
                            lambda: self._build(payload))

    def held(self, codec: str) -> bytes:
        """Float32 bytes of the parameters a client of `codec` computes on this iteration (for spot checks)."""
        if self.iteration is None or self.params is None:
            raise RuntimeError("advance() first")
        stream = self.streams.get(codec)
        if stream is None:
            return f32_bytes(self.params)
        if stream.is_delta:
            assert stream.mirror is not None
            return f32_bytes(stream.mirror)
        return f32_bytes(decode_vector(codec, stream.payload_for(None).data, self.params.size))

    def _build(self, payload: ParamsPayload) -> bytes:
        assert self.iteration is not None
        return coded_params_frame(self.iteration, payload.codec, payload.data, payload.base)

    def _cached(self, key: tuple[str, int | None], build) -> bytes:
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = build()
            self.encodes += 1
        return frame
