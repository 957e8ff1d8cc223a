"""Write the codec test vectors: `python tests/vectors/codecs/make_codec_vectors.py`.

The bytes each codec gives for fixed inputs, so that mlitb/codecs.py,
mlitb/static/js/codecs.js and any third-party worker can be checked against
one file (docs/protocol.md, "Codecs"). Format of `codecs.json`
(all arrays base64 of little-endian float32, all encodings base64 bytes):

    {"vectors": [{"name", "codec", "size", "k" (topk only), "input", "encoded", "decoded"}],
     "feedback": [{"name", "codec", "size", "topk_ratio", "inputs": [..], "encoded": [..], "residual"}],
     "params": [{"name", "codec", "full_every", "iterations": [..], "inputs": [..],
                 "frames": [{"codec", "base", "data"}], "held": [..]}]}

`held` is what a client that received every frame holds after each one.
The inputs exercise the edges: f16 rounding ties, subnormals and values beyond
its range; i8 quotients that are exactly .5, a zero block and a partial last
block; top-k ties broken toward the lower index.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent.parent))

from mlitb.codecs import (
    ErrorFeedback,
    ParamsReceiver,
    ParamsStream,
    decode_vector,
    encode_vector,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def f32(x: np.ndarray) -> str:
    return b64(np.asarray(x, "<f4").tobytes())


def edge_input() -> np.ndarray:
    """600 values: 2 full int8 blocks and a partial one, with every edge listed above."""
    rng = np.random.default_rng(16)
    x = rng.normal(0, 1, 600).astype(np.float32)
    x[:8] = [1.0, -1.0, 0.5, 70000.0, -1e6, 3e-8, 1e-9, 1.00048828125]  # 1 + 2^-11: an f16 tie
    x[8:12] = [2049.0, 2051.0, -65519.0, 65520.0]
    x[256:512] = 0.0  # a zero block
    x[512] = 127.0
    x[513:520] = [0.5, 1.5, -2.5, 63.5, -0.5, 126.5, -127.0]  # exact halves of the scale 1
    x[520:524] = [-3.0, 3.0, 3.0, -3.0]  # ties for top-k
    return x


def main() -> None:
    x = edge_input()
    small = np.array([0.25, -4.0, 4.0, 1.0, -0.0, 2.0, -4.0], np.float32)
    vectors = []
    for name, data in (("edge", x), ("small", small)):
        for codec in ("f32", "f16", "i8", "topk"):
            k = {"edge": 13, "small": 3}[name] if codec == "topk" else None
            encoded = encode_vector(codec, data, k=k)
            entry = {"name": f"{name}-{codec}", "codec": codec, "size": int(data.size), "input": f32(data),
                     "encoded": b64(encoded), "decoded": f32(decode_vector(codec, encoded, data.size))}
            if k is not None:
                entry["k"] = k
            vectors.append(entry)

    rng = np.random.default_rng(7)
    grads = [rng.normal(0, 1, 300).astype(np.float32) * s for s in (1.0, 3.0, 0.1)]
    feedback = []
    for codec, ratio in (("i8", 0.01), ("topk", 0.05), ("f16", 0.01)):
        ef = ErrorFeedback(codec, 300, topk_ratio=ratio)
        encoded = [b64(ef.encode(g)) for g in grads]
        feedback.append({"name": f"feedback-{codec}", "codec": codec, "size": 300, "topk_ratio": ratio,
                         "inputs": [f32(g) for g in grads], "encoded": encoded, "residual": f32(ef.residual)})

    params = []
    walk = [rng.normal(0, 0.1, 300).astype(np.float32)]
    for _ in range(5):
        walk.append((walk[-1] - 0.01 * rng.normal(0, 1, 300)).astype(np.float32))
    iterations = [4, 5, 6, 7, 8, 9]
    for codec in ("delta-i8", "delta-f16", "f16"):
        stream, client = ParamsStream(codec, full_every=3), ParamsReceiver(300)
        frames, held = [], []
        for it, p in zip(iterations, walk):
            payload = stream.advance(it, p)
            frames.append({"codec": payload.codec, "base": payload.base, "data": b64(payload.data)})
            held.append(f32(client.apply(it, payload.codec, payload.data, payload.base)))
        params.append({"name": f"stream-{codec}", "codec": codec, "full_every": 3, "iterations": iterations,
                       "inputs": [f32(p) for p in walk], "frames": frames, "held": held})

    out = {"vectors": vectors, "feedback": feedback, "params": params}
    (HERE / "codecs.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
