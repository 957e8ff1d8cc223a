"""Examples/s of a gradient (forward + backward, gradients accumulated) at batch 64.

Engines, side by side in one run: the JS engine in a Web Worker in headless
Chromium (relaxed SIMD, strict WASM SIMD, plain JS, and the WebGPU engine on
Chromium's SwiftShader adapter: a CPU emulation of a GPU, a correctness path,
not a speed), the JS engine in Node, the numpy engine and PyTorch on one CPU
thread (when importable). Prints a table, then one JSON line. Real-GPU figures
come from bench/gpu/ (an H200).
Every engine gets one thread: numpy's BLAS is pinned before numpy loads, as
PyTorch is with set_num_threads(1), so the ratios compare like with like.

    python bench/engines.py [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402  (after pinning BLAS to one thread)

ROOT = Path(__file__).resolve().parent.parent
BATCH = 64
NETS = json.loads((ROOT / "bench" / "nets.json").read_text())
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-webgpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def best_rate(step, seconds: float) -> float:
    """Best examples/s over five windows, after a short warm-up."""
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        step()
    rates = []
    for _ in range(5):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            step()
            done += BATCH
        rates.append(done / (time.perf_counter() - start))
    return max(rates)


def batch(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((BATCH, *shape), dtype=np.float32), rng.integers(0, 10, BATCH)


def numpy_engine(seconds: float) -> dict[str, float] | None:
    try:
        from mlitb.model import Net
    except ImportError:
        return None
    out = {}
    for name, defs in NETS.items():
        net = Net(defs)
        params = net.init_params(1)
        x, labels = batch(net.input_shape)
        total = np.zeros(net.param_count, np.float32)

        def step():
            total.__iadd__(net.gradient(params, x, labels).grad_sum)

        out[name] = best_rate(step, seconds)
    return out


def torch_model(torch, name: str):
    nn = torch.nn
    if name == "mnist_convnet":
        return nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
                             nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 3),
                             nn.Flatten(), nn.Linear(256, 10))
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))


def torch_engine(seconds: float) -> dict[str, float] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    out = {}
    for name in NETS:
        model = torch_model(torch, name)
        x, labels = batch((28, 28, 1))
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        yt = torch.from_numpy(labels)
        loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")

        def step():
            loss_fn(model(xt), yt).backward()

        out[name] = best_rate(step, seconds)
    return out


def node_engine(seconds: float) -> dict[str, float]:
    line = subprocess.run(["node", str(ROOT / "bench" / "node.mjs"), str(seconds)],
                          check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return json.loads(line)


class Handler(SimpleHTTPRequestHandler):
    """Serves mlitb/static/, bench/ and tests/vectors/ under their own paths, nothing else."""

    extensions_map = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                      ".json": "application/json", ".html": "text/html", "": "application/octet-stream"}

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        for prefix in ("/mlitb/static/", "/bench/", "/tests/vectors/"):
            if path.startswith(prefix):
                return super().translate_path(path)
        return str(ROOT / "nonexistent")

    def log_message(self, *args) -> None:
        pass


def browser_engine(seconds: float) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(ROOT)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS, headless=True)
            page = browser.new_page()
            vectors = ",".join(sorted(p.name for p in (ROOT / "tests" / "vectors").glob("*.json")))
            page.goto(f"http://127.0.0.1:{server.server_port}/bench/page.html?seconds={seconds}&vectors={vectors}")
            page.wait_for_function("window.benchResult", timeout=600_000, polling=1000)
            result = page.evaluate("window.benchResult")
            browser.close()
    finally:
        server.shutdown()
    if "error" in result:
        raise RuntimeError(f"browser benchmark failed: {result['error']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per engine and net")
    parser.add_argument("--skip-browser", action="store_true",
                        help="no Chromium here (a quiet GPU host): Node, numpy and PyTorch rows only")
    args = parser.parse_args()

    browser = {} if args.skip_browser else browser_engine(args.seconds)
    node = node_engine(args.seconds)
    numpy_rates, torch_rates = numpy_engine(args.seconds), torch_engine(args.seconds)
    webgpu = browser.get("webgpu", {})
    rows = {
        "js_browser": browser and {n: max(browser.get(f"{n}/wasm-relaxed-simd", 0), browser[f"{n}/wasm-simd"]) for n in NETS},
        "js_browser_strict": browser and {n: browser[f"{n}/wasm-simd"] for n in NETS},
        "js_browser_plain": browser and {n: browser[f"{n}/js"] for n in NETS},
        "webgpu_swiftshader": webgpu.get("rates"),
        "js_node": {n: node.get(f"{n}/wasm-relaxed-simd", node[f"{n}/wasm-simd"]) for n in NETS},
        "js_node_strict": {n: node[f"{n}/wasm-simd"] for n in NETS},
        "js_node_plain": {n: node[f"{n}/js"] for n in NETS},
        "numpy": numpy_rates,
        "torch_1thread": torch_rates,
    }
    relaxed_in_browser = all(f"{n}/wasm-relaxed-simd" in browser for n in NETS)
    labels = {"js_browser": f"JS, Chromium, {'relaxed SIMD' if relaxed_in_browser else 'WASM SIMD'}",
              "js_browser_strict": "JS, Chromium, strict SIMD", "js_browser_plain": "JS, Chromium, plain JS",
              "webgpu_swiftshader": "WebGPU, Chromium, SwiftShader", "js_node": "JS, Node, relaxed SIMD",
              "js_node_strict": "JS, Node, strict SIMD", "js_node_plain": "JS, Node, plain JS",
              "numpy": "numpy engine", "torch_1thread": "PyTorch CPU, 1 thread"}
    names = list(NETS)
    print(f"examples/s, gradient at batch {BATCH} (forward + backward, accumulated)")
    print(f"{'engine':34}" + "".join(f"{n:>16}" for n in names))
    for key, rates in rows.items():
        cells = "".join(f"{rates[n]:>16,.0f}" if rates else f"{'n/a':>16}" for n in names)
        print(f"{labels[key]:34}{cells}")

    def ratio(num: str, den: str, net: str = "mnist_convnet") -> float | None:
        return round(rows[num][net] / rows[den][net], 3) if rows[num] and rows[den] else None

    summary = {"batch": BATCH, "examples_per_second": {k: v and {n: round(r, 1) for n, r in v.items()} for k, v in rows.items()},
               "js_browser_over_torch": ratio("js_browser", "torch_1thread"),
               "js_browser_over_numpy": ratio("js_browser", "numpy"),
               "mlp_js_browser_over_torch": ratio("js_browser", "torch_1thread", "mlp"),
               "mlp_js_browser_over_numpy": ratio("js_browser", "numpy", "mlp"),
               "js_node_over_torch": ratio("js_node", "torch_1thread"),
               "mlp_js_node_over_torch": ratio("js_node", "torch_1thread", "mlp"),
               "relaxed_over_strict_browser": ratio("js_browser", "js_browser_strict"),
               "mlp_relaxed_over_strict_browser": ratio("js_browser", "js_browser_strict", "mlp"),
               "webgpu_adapter": webgpu.get("adapter") or webgpu.get("error"),
               "webgpu_parity_worst": browser.get("webgpuParity", {}).get("worst"),
               "webgpu_parity_ok": bool(browser.get("webgpuParity", {}).get("vectors")) and browser["webgpuParity"]["worst"] <= 1e-4}
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
