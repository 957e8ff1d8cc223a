"""Examples/s of PyTorch (eager, fp32, TF32 off) on the same nets and batches as
bench/gpu/engines.mjs: forward, cross-entropy, backward, per batch, on CUDA
when there is a GPU (else one CPU thread). Prints one JSON line.

    python bench/gpu/torch_cuda.py [seconds] [batches]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
NETS = {**json.loads((HERE.parent / "nets.json").read_text()), **json.loads((HERE / "nets.json").read_text())}


def model_from(defs: list[dict]) -> torch.nn.Sequential:
    """The ConvNetJS layer_defs as torch modules (conv, pool, fc, relu, softmax's fc)."""
    nn = torch.nn
    layers: list[torch.nn.Module] = []
    depth = size = 0
    for d in defs:
        kind = d["type"]
        if kind == "input":
            depth, size, flat = d["out_depth"], d["out_sx"], False
        elif kind == "conv":
            pad, stride = d.get("pad", 0), d.get("stride", 1)
            layers.append(nn.Conv2d(depth, d["filters"], d["sx"], stride=stride, padding=pad))
            depth, size = d["filters"], (size + 2 * pad - d["sx"]) // stride + 1
        elif kind == "pool":
            stride = d.get("stride", 2)
            layers.append(nn.MaxPool2d(d["sx"], stride))
            size = (size - d["sx"]) // stride + 1
        elif kind in ("fc", "softmax"):
            if not flat:
                layers.append(nn.Flatten())
                depth, size, flat = depth * size * size, 1, True
            out = d.get("num_neurons", d.get("num_classes"))
            layers.append(nn.Linear(depth, out))
            depth = out
        if d.get("activation") == "relu":
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def rate(device: torch.device, defs: list[dict], batch: int, seconds: float) -> float:
    model = model_from(defs).to(device)
    first = defs[0]
    x = torch.rand(batch, first["out_depth"], first["out_sy"], first["out_sx"], device=device)
    y = torch.randint(0, defs[-1]["num_classes"], (batch,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step() -> None:
        model.zero_grad(set_to_none=False)
        loss_fn(model(x), y).backward()

    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        step()
    sync()
    rates = []
    for _ in range(5):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            step()
            done += batch
        sync()
        rates.append(done / (time.perf_counter() - start))
    return max(rates)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    batches = [int(b) for b in (sys.argv[2] if len(sys.argv) > 2 else "64,256").split(",")]
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(1)
    out = {"device": torch.cuda.get_device_name() if cuda else "cpu, 1 thread", "torch": torch.__version__, "rates": {}}
    for name, defs in NETS.items():
        for batch in batches:
            out["rates"][f"{name}/torch/{batch}"] = rate(device, defs, batch, seconds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
