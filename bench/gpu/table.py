"""The GPU table: bench/gpu/engines.mjs's and torch_cuda.py's JSON lines in,
examples/s and ratios out (a table, then one JSON line).

    python bench/gpu/table.py engines.json torch.json [parity.json]
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    ours, torch = (json.loads(open(path).read().strip().splitlines()[-1]) for path in sys.argv[1:3])
    parity = json.loads(open(sys.argv[3]).read().strip().splitlines()[-1]) if len(sys.argv) > 3 else None
    rates = {**ours["rates"], **torch["rates"]}
    keys = sorted({tuple(k.split("/")[::2]) for k in rates}, key=lambda k: (k[0], int(k[1])))
    print(f"GPU: {ours['adapter']} (WebGPU, Dawn for Node) · PyTorch {torch['torch']} on {torch['device']} (eager, fp32, TF32 off)")
    print(f"{'net':18}{'batch':>6}{'WebGPU':>12}{'WASM 1 core':>13}{'PyTorch CUDA':>14}{'GPU/WASM':>10}{'GPU/torch':>11}")
    summary = {"adapter": ours["adapter"], "torch_device": torch["device"], "rows": []}
    for net, batch in keys:
        gpu, wasm, tor = (rates.get(f"{net}/{e}/{batch}") for e in ("webgpu", "wasm-simd", "torch"))
        over_wasm = gpu / wasm if gpu and wasm else None
        over_torch = gpu / tor if gpu and tor else None
        cell = lambda v, w: f"{v:>{w},.0f}" if v else f"{'n/a':>{w}}"
        ratio = lambda v, w: f"{v:>{w}.2f}" if v else f"{'n/a':>{w}}"
        print(f"{net:18}{batch:>6}{cell(gpu, 12)}{cell(wasm, 13)}{cell(tor, 14)}{ratio(over_wasm, 10)}{ratio(over_torch, 11)}")
        summary["rows"].append({"net": net, "batch": int(batch), "webgpu": gpu and round(gpu, 1), "wasm_simd": wasm and round(wasm, 1),
                                "torch_cuda": tor and round(tor, 1), "webgpu_over_wasm": over_wasm and round(over_wasm, 2),
                                "webgpu_over_torch": over_torch and round(over_torch, 3)})
    if parity is not None:
        worst = max((v.get("gradRelError", float("inf")) for v in parity["vectors"].values()), default=float("inf"))
        summary["gpu_parity_worst_grad_rel_error"] = worst
        summary["webgpu_parity_ok"] = worst <= 1e-4
        print(f"parity on this GPU: worst gradient relative error {worst:.2e} over {len(parity['vectors'])} vectors")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
