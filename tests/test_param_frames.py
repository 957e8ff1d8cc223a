"""Parameter frames per codec: one encode per codec and kind per iteration, whatever the number of clients."""

from __future__ import annotations

import msgpack
import numpy as np

from mlitb.codecs import ParamsReceiver
from mlitb.master.param_frames import ParamFrames


def _apply(receiver: ParamsReceiver, frame: bytes) -> np.ndarray:
    m = msgpack.unpackb(frame)
    return receiver.apply(m["iteration"], m.get("codec", "f32"), m["params"], m.get("base"))


def test_frames_are_shared_and_deltas_go_only_to_clients_with_a_known_base():
    rng = np.random.default_rng(0)
    params = rng.normal(0, 0.1, 2000).astype(np.float32)
    frames = ParamFrames(full_every=4)
    clients = {"a": ("f32", ParamsReceiver(2000)), "b": ("delta-i8", ParamsReceiver(2000)),
               "c": ("delta-i8", ParamsReceiver(2000)), "d": ("delta-f16", ParamsReceiver(2000))}
    bases: dict[str, int | None] = {name: None for name in clients}
    for it in range(1, 10):
        params = (params - 0.01 * rng.normal(0, 1, params.size)).astype(np.float32)
        before = frames.encodes
        frames.advance(it, params, {codec for codec, _ in clients.values()})
        sent = {name: frames.frame_for(codec, bases[name] if name != "c" or it % 2 else None)
                for name, (codec, _) in clients.items()}
        assert sent["b"] is frames.frame_for("delta-i8", bases["b"])  # the same bytes object: built once
        assert frames.encodes - before <= 5  # f32, delta-i8 delta + full, delta-f16 delta + full at most
        for name, (codec, receiver) in clients.items():
            held = _apply(receiver, sent[name])
            if codec == "f32" or it % 4 == 0:
                assert held.tobytes() == params.tobytes()
            else:
                assert held.tobytes() == frames.streams[codec].mirror.tobytes()
                assert np.abs(held - params).max() < 0.01
            bases[name] = it
        kinds = {name: msgpack.unpackb(f).get("codec", "f32") for name, f in sent.items()}
        if it > 1 and it % 4:
            assert kinds["b"] == "delta-i8" and kinds["d"] == "delta-f16"
            assert kinds["c"] == ("delta-i8" if it % 2 else "f32")  # c's base is unknown on even iterations
    assert len(sent["b"]) < len(sent["a"]) / 3
