"""Slow links: what codecs and local steps buy, side by side in one run.

`python bench/links.py [--iterations 30] [--clients 2] [--examples 128] [--models mnist_convnet,mlp_1m]`

For each model (ConvNetJS's MNIST convnet, 5,994 parameters, and an MLP
784-1024-1024-10, 1,863,690 parameters) and each setting (result codec,
parameter codec, local steps H), it trains on the shipped MNIST (8,000 train,
2,000 test) with the project's own code paths: `ParamsStream` encodes the
parameters once per iteration, every client applies them with a
`ParamsReceiver`, computes E examples per iteration on the numpy engine (H = 1:
one gradient sum; H > 1: `run_local_steps`, H steps of E/H examples), encodes
its result through `ErrorFeedback`, and the master decodes every result,
averages by count and steps (SGD with momentum for gradients, Nesterov outer
steps for local steps). Frames are built with msgpack as the protocol does, so
the bytes are the wire's.

Time on a slow link: each setting's average frames (down and up) are sent
for real through `tests/throttle_proxy.py` at 1 MB/s and 150 ms extra round
trip (download, then upload, then a one-byte answer), and the seconds that
takes plus the clients' measured compute time per iteration give the
iteration's wall time on that link; time to target = iterations to reach the
target test accuracy × that. Accuracy at equal wall time: each setting's test
accuracy after as many iterations as fit in the baseline's time for half its
iterations.

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlitb.codecs import ErrorFeedback, ParamsReceiver, ParamsStream, decode_vector
from mlitb.local_steps import PartResult, outer_optimizer, run_local_steps
from mlitb.model import Net
from mlitb.model.zoo import MNIST_CONVNET
from mlitb.optim import make_optimizer
from mlitb.protocol import encode
from tests.throttle_proxy import throttled

MLP_1M = [
    {"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
    {"type": "fc", "num_neurons": 1024, "activation": "relu"},
    {"type": "fc", "num_neurons": 1024, "activation": "relu"},
    {"type": "softmax", "num_classes": 10},
]
MODELS = {"mnist_convnet": MNIST_CONVNET, "mlp_1m": MLP_1M}
TARGET = {"mnist_convnet": 0.80, "mlp_1m": 0.88}
RATE = 1_000_000  # bytes/s each way
DELAY = 0.150  # extra round trip, s
TOPK_RATIO = 0.01
FULL_EVERY = 20
LR = {"mnist_convnet": 0.05, "mlp_1m": 0.05}  # SGD with momentum 0.9 (gradients) and local SGD (local steps)


@dataclass(frozen=True)
class Setting:
    result: str
    params: str
    steps: int = 1

    @property
    def name(self) -> str:
        return f"{self.result}/{self.params}/H{self.steps}"


SETTINGS = [
    Setting("f32", "f32"), Setting("f16", "f16"), Setting("i8", "f32"), Setting("topk", "f32"),
    Setting("i8", "delta-i8"), Setting("topk", "delta-i8"), Setting("topk", "delta-f16"),
    Setting("f32", "f32", 4), Setting("f32", "f32", 16),
    Setting("i8", "delta-i8", 4), Setting("i8", "delta-i8", 16), Setting("topk", "delta-i8", 16),
]


@dataclass
class Run:
    setting: Setting
    accuracy: list[float] = field(default_factory=list)  # test accuracy after each iteration
    down: list[int] = field(default_factory=list)  # mean params frame bytes per client, per iteration
    up: list[int] = field(default_factory=list)  # mean result frame bytes per client, per iteration
    compute_s: list[float] = field(default_factory=list)  # slowest client's compute, per iteration
    link_s: float = 0.0  # measured through the proxy with the mean frames


def load_mnist(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 28, 28, 1) uint8 and labels from the shipped upload-format zip."""
    pixels, labels = [], []
    with zipfile.ZipFile(ROOT / "mlitb" / "datasets" / f"{name}.zip") as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            parts = info.filename.split("/")
            if info.is_dir() or len(parts) < 3:
                continue
            pixels.append(np.asarray(Image.open(io.BytesIO(archive.read(info))).convert("L"), np.uint8))
            labels.append(int(parts[-2]))
    return np.stack(pixels)[..., None], np.array(labels, np.int64)


def train(model: str, setting: Setting, data, iterations: int, clients: int, examples: int) -> Run:
    (train_x, train_y), (test_x, test_y) = data
    net = Net(MODELS[model])
    params = net.init_params(1)
    if setting.steps == 1:
        master = make_optimizer("sgd", {"learning_rate": LR[model], "momentum": 0.9}, net.layout)
    else:
        master = outer_optimizer({"name": "nesterov", "learning_rate": 0.7, "momentum": 0.9}, net.layout)
    stream = ParamsStream(setting.params, full_every=FULL_EVERY)
    receivers = [ParamsReceiver(params.size) for _ in range(clients)]
    feedback = [ErrorFeedback(setting.result, params.size, TOPK_RATIO) for _ in range(clients)]
    shards = np.array_split(np.random.default_rng(0).permutation(train_y.size), clients)
    cursors = [0] * clients
    test_in = test_x.astype(np.float32) / 255  # the first --test examples of the test split
    run = Run(setting)
    answered = [None] * clients
    for it in range(1, iterations + 1):
        stream.advance(it, params)
        total = np.zeros(params.size, np.float32)
        count = 0
        down = up = 0
        slowest = 0.0
        for c in range(clients):
            payload = stream.payload_for(answered[c])
            frame = {"type": "params", "iteration": it, "codec": payload.codec, "params": payload.data}
            if payload.base is not None:
                frame["base"] = payload.base
            down += len(encode(frame))
            held = receivers[c].apply(it, payload.codec, payload.data, payload.base)

            def part(w: np.ndarray, h: int, c: int = c, n: int = examples // setting.steps, it: int = it) -> PartResult:
                shard = shards[c]
                idx = shard[(cursors[c] + np.arange(n)) % shard.size]
                cursors[c] += n
                g = net.gradient(w, train_x[idx].astype(np.float32) / 255, train_y[idx], seed=it * 1000 + h)
                return PartResult(g.grad_sum, g.count, g.loss_sum, g.correct)

            start = time.perf_counter()
            if setting.steps == 1:
                r = part(held, 0)
                grad, n = r.grad_sum, r.count
            else:
                local = run_local_steps(part, held, setting.steps, LR[model])
                grad, n = local.grad_sum, local.count
            data_bytes = feedback[c].encode(grad)
            slowest = max(slowest, time.perf_counter() - start)
            up += len(encode({"type": "result", "iteration": it, "codec": setting.result, "grad": data_bytes,
                              "count": n, "loss_sum": 0.0, "correct": 0, "compute_ms": 0.0}))
            total += decode_vector(setting.result, data_bytes, params.size)
            count += n
            answered[c] = it
        master.step(params, total, count)
        probs = net.predict(params, test_in)
        run.accuracy.append(float((probs.argmax(axis=1) == test_y).mean()))
        run.down.append(down // clients)
        run.up.append(up // clients)
        run.compute_s.append(slowest)
    return run


async def link_seconds(down: int, up: int) -> float:
    """Seconds to move `down` bytes to a client and `up` back through the throttled proxy (measured)."""
    done = asyncio.get_running_loop().create_future()

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        writer.write(b"\0" * down)
        await writer.drain()
        await reader.readexactly(up)
        writer.write(b"\1")
        await writer.drain()
        await done
        writer.close()

    srv = await asyncio.start_server(server, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with throttled(port, RATE, DELAY) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"\0")
        await writer.drain()
        start = time.perf_counter()  # the request's own half delay is part of the measured trip
        await reader.readexactly(down)
        writer.write(b"\0" * up)
        await writer.drain()
        await reader.readexactly(1)
        seconds = time.perf_counter() - start
        done.set_result(None)
        writer.close()
    srv.close()
    return seconds + DELAY / 2


def first_reaching(accuracy: list[float], target: float) -> int | None:
    return next((i + 1 for i, a in enumerate(accuracy) if a >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--examples", type=int, default=128, help="examples per client per iteration")
    parser.add_argument("--models", default="mnist_convnet,mlp_1m")
    parser.add_argument("--settings", default="", help="comma-separated names like i8/delta-i8/H4 (default: all)")
    parser.add_argument("--test", type=int, default=500, help="test examples evaluated after each iteration")
    parser.add_argument("--target", default="", help="model=accuracy,... (default mnist_convnet=0.8,mlp_1m=0.88)")
    args = parser.parse_args()
    for pair in filter(None, args.target.split(",")):
        name, value = pair.split("=")
        TARGET[name] = float(value)
    test_x, test_y = load_mnist("mnist-test")
    data = (load_mnist("mnist-train"), (test_x[:args.test], test_y[:args.test]))
    wanted = set(filter(None, args.settings.split(",")))
    settings = [s for s in SETTINGS if not wanted or s.name in wanted]
    summary: dict[str, dict] = {}
    for model in args.models.split(","):
        runs = []
        for s in settings:
            started = time.perf_counter()
            runs.append(train(model, s, data, args.iterations, args.clients, args.examples))
            print(f"# {model} {s.name}: accuracy {runs[-1].accuracy[-1]:.4f}, {time.perf_counter() - started:.0f} s",
                  flush=True)
        sizes: dict[tuple[int, int], float] = {}
        for run in runs:
            key = (int(np.mean(run.down)), int(np.mean(run.up)))
            if key not in sizes:
                sizes[key] = asyncio.run(link_seconds(*key))
            run.link_s = sizes[key]
        base = runs[0]
        base_iter_s = base.link_s + float(np.median(base.compute_s))
        equal_time = base_iter_s * args.iterations / 2
        print(f"\n{model}: {Net(MODELS[model]).param_count:,} parameters, {args.clients} clients × "
              f"{args.examples} examples/iteration, {args.iterations} iterations, link {RATE / 1e6:g} MB/s + "
              f"{DELAY * 1000:g} ms, target {TARGET[model]:.0%}")
        print(f"{'setting':<22}{'down B/it':>12}{'up B/it':>12}{'down ×':>8}{'up ×':>8}{'acc@iters':>10}"
              f"{'s/it link':>10}{'acc@time':>9}{'it→target':>10}{'s→target':>10}{'speed-up':>9}")
        rows = {}
        base_time = None
        for run in runs:
            iter_s = run.link_s + float(np.median(run.compute_s))
            reach = first_reaching(run.accuracy, TARGET[model])
            to_target = reach * iter_s if reach else None
            if run is base:
                base_time = to_target
            fit = min(args.iterations, max(1, int(equal_time / iter_s)))
            row = {
                "down_bytes": int(np.mean(run.down)), "up_bytes": int(np.mean(run.up)),
                "down_ratio": round(np.mean(base.down) / np.mean(run.down), 2),
                "up_ratio": round(np.mean(base.up) / np.mean(run.up), 2),
                "accuracy": round(run.accuracy[-1], 4), "iteration_s": round(iter_s, 2),
                "accuracy_equal_time": round(run.accuracy[fit - 1], 4),
                "iterations_to_target": reach, "seconds_to_target": round(to_target, 1) if to_target else None,
                "speedup_to_target": round(base_time / to_target, 2) if to_target and base_time else None,
            }
            rows[run.setting.name] = row
            print(f"{run.setting.name:<22}{row['down_bytes']:>12,}{row['up_bytes']:>12,}{row['down_ratio']:>8}"
                  f"{row['up_ratio']:>8}{row['accuracy']:>10.4f}{row['iteration_s']:>10}{row['accuracy_equal_time']:>9.4f}"
                  f"{reach or '-'!s:>10}{row['seconds_to_target'] or '-'!s:>10}"
                  f"{row['speedup_to_target'] or '-'!s:>9}")
        summary[model] = rows
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
