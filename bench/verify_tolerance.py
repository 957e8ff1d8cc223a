"""How far an honest JS result is from the verifier's numpy recomputation: the basis of VerifySettings.tolerance.

A work of 10 batches × 32 MNIST examples in the work's seeded order (dropout
seeded per batch as the protocol says) is computed by the JS engine (plain JS
and WASM SIMD, in node, via bench/verify_tolerance.mjs) and by the numpy
recompute path of the verifier; prints the relative error of the whole
gradient, of the worst parameter block (as verification.compare measures it),
of loss_sum, and correct. Last line JSON.

    python bench/verify_tolerance.py
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mlitb.data.catalog import ensure_shipped_datasets, get_shard
from mlitb.data.shards import decode_shard
from mlitb.model import Net
from mlitb.model.zoo import MNIST_CONVNET
from mlitb.store import FileStore
from mlitb.work_order import batch_seeds, example_order
from mlitb.worker.compute import Normalization, gather, recompute

DROPOUT_NET = [
    {"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
    {"type": "conv", "sx": 5, "filters": 4, "stride": 1, "pad": 2, "activation": "relu"},
    {"type": "pool", "sx": 2, "stride": 2},
    {"type": "fc", "num_neurons": 16, "activation": "relu"},
    {"type": "dropout", "drop_prob": 0.3},
    {"type": "softmax", "num_classes": 10},
]
HERE = Path(__file__).parent


async def shards() -> list[bytes]:
    with tempfile.TemporaryDirectory() as root:
        store = FileStore(Path(root))
        manifest = (await ensure_shipped_datasets(store))[0]
        blobs = [await get_shard(store, r.id) for r in manifest.train.shards[:4]]
        await store.close()
        return blobs


def main() -> None:
    examples = gather([decode_shard(b) for b in asyncio.run(shards())])
    seed, batches = 123456, (32,) * 10
    order = example_order(examples.shard_counts, seed)[:sum(batches)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, layers in (("mnist convnet", MNIST_CONVNET), ("conv+fc+dropout", DROPOUT_NET)):
            net = Net(layers)
            params = net.init_params(5)
            ref = recompute(net.gradient, params, examples, Normalization(), seed, batches)
            params.tofile(f"{tmp}/params.bin")
            (examples.pixels[order].astype(np.float32) / np.float32(255)).tofile(f"{tmp}/x.bin")
            Path(f"{tmp}/spec.json").write_text(json.dumps({"layers": layers, "labels": examples.labels[order].tolist(),
                                                            "batches": batches, "seeds": batch_seeds(seed, batches)}))
            out = json.loads(subprocess.run(["node", str(HERE / "verify_tolerance.mjs"), tmp], capture_output=True,
                                            text=True, check=True).stdout)
            r = ref.grad_sum.astype(np.float64)
            for simd in ("false", "true"):
                g = np.fromfile(f"{tmp}/grad_{simd}.bin", np.float32).astype(np.float64)
                worst = max(np.linalg.norm(g[b.offset:b.offset + b.size] - r[b.offset:b.offset + b.size])
                            / max(np.linalg.norm(r[b.offset:b.offset + b.size]), 1e-3 * np.linalg.norm(r))
                            for b in net.layout)
                rows.append({"net": name, "engine": out[simd]["backend"],
                             "grad_rel": float(np.linalg.norm(g - r) / np.linalg.norm(r)), "worst_block_rel": float(worst),
                             "loss_rel": abs(out[simd]["loss"] - ref.loss_sum) / ref.loss_sum,
                             "correct": [out[simd]["correct"], ref.correct]})
    print(f"{'net':16} {'engine':10} {'grad rel':>9} {'worst block':>11} {'loss rel':>9} correct js/numpy")
    for row in rows:
        print(f"{row['net']:16} {row['engine']:10} {row['grad_rel']:9.1e} {row['worst_block_rel']:11.1e} "
              f"{row['loss_rel']:9.1e} {row['correct'][0]}/{row['correct'][1]}")
    print(json.dumps({"bench": "verify_tolerance", "rows": rows}))


if __name__ == "__main__":
    main()
