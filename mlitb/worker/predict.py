"""A worker's prediction side: `predict` chunks in, `prediction` answers out, between training results.

Chunks queue, and the smallest goes first (the master keeps a slot of every
worker for a new request, so an 8-image request waits for the chunk being
computed, not for the batch queued beside it). Each is bound to its parameters when it
arrives (the frame carries them the first time a connection gets a chunk of
an iteration; the worker keeps the latest), so a later `params` frame never
changes what a queued chunk is computed with. Prediction and training share
one compute lock: a chunk runs only when no training batch does, and a chunk
is small (the master sizes it to ~150 ms of this worker's speed), so a
`work` that arrives waits at most one chunk, which the master's latency
estimate absorbs; training deadlines hold.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection

from mlitb.closure import Normalization
from mlitb.model import Net
from mlitb.model.classify import classify
from mlitb.protocol import ProtocolError, f32_array, prediction_frame


@dataclass(frozen=True)
class PredictChunk:
    key: str
    pixels: np.ndarray  # uint8 (count, H, W, C)
    params: np.ndarray


@dataclass
class PredictQueue:
    """Chunks waiting for the compute lock, and the parameters the master last sent with one."""

    chunks: deque[PredictChunk] = field(default_factory=deque)
    params: tuple[int, np.ndarray] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def receive(self, message: dict[str, Any], net: Net, training_params: tuple[int, np.ndarray] | None) -> str | None:
        """Queue a `predict` frame's chunk; the reason it cannot be computed, or None."""
        iteration, count = int(message["iteration"]), int(message["count"])
        if "params" in message:
            self.params = (iteration, f32_array(message["params"], net.param_count, "params"))
        held = [p for p in (self.params, training_params) if p is not None]
        params = next((array for i, array in held if i == iteration), None)
        if params is None:
            return f"chunk {message['key']}: no parameters of iteration {iteration}"
        height, width, depth = net.input_shape
        pixels = np.frombuffer(message["pixels"], np.uint8)
        if pixels.size != count * height * width * depth:
            raise ProtocolError("bad_field", f"predict chunk {message['key']} has {pixels.size} pixel bytes for {count} images")
        self.chunks.append(PredictChunk(str(message["key"]), pixels.reshape(count, height, width, depth), params))
        self.ready.set()
        return None

    async def take(self) -> PredictChunk:
        """The smallest queued chunk (the oldest of equals): a small request's is never stuck behind a batch's."""
        while not self.chunks:
            self.ready.clear()
            await self.ready.wait()
        smallest = min(self.chunks, key=lambda chunk: chunk.pixels.shape[0])
        self.chunks.remove(smallest)
        return smallest


async def predict_loop(ws: ClientConnection, queue: PredictQueue, net: Net, normalization: Normalization,
                       compute_lock: asyncio.Lock, on_answer: Callable[[int], None]) -> None:
    """Answer queued chunks one at a time, each while training does not compute."""
    while True:
        chunk = await queue.take()
        async with compute_lock:
            started = time.perf_counter()
            probs = await asyncio.to_thread(classify, net, chunk.params, chunk.pixels,
                                            normalization.scale, normalization.offset)
            compute_ms = (time.perf_counter() - started) * 1000.0
        await ws.send(prediction_frame(chunk.key, probs, compute_ms))
        on_answer(chunk.pixels.shape[0])
