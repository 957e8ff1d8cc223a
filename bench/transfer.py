"""Transfer learning on the shipped MNIST (issue 15): digits 0–4 → a new project on digits 5–9.

`python bench/transfer.py [--iterations 100] [--workers 1] [--iteration-ms 500]` runs `mlitb serve`
and `mlitb worker` processes: it trains the MNIST convnet on digits 0–4, then three projects on digits
5–9 with the same workers, T, optimizer and seed, one after the other: from scratch; from the 0–4
closure with a new head (`from` + `head: "replace"`); and the same with both conv layers frozen
(`lr_multipliers` 0). It prints the master's test accuracy (on the 5–9 test split) after 5, 10, 20,
50 and 100 iterations, then one JSON line with the figures and the ratios transfer / scratch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.research_system import digits_zip, running, tested_at
from mlitb.model.zoo import MNIST_CONVNET

CHECKPOINTS = (5, 10, 20, 50, 100)


def main(args: argparse.Namespace) -> None:
    layers = [dict(layer) for layer in MNIST_CONVNET]
    layers[-1]["num_classes"] = 5
    common = {"iteration_ms": args.iteration_ms, "eval_every": 5, "seed": 1,
              "optimizer": {"name": "adam", "learning_rate": 0.002}}
    with running() as system:
        low = system.upload("digits 0-4", digits_zip("train", "01234"), digits_zip("test", "01234"))
        high = system.upload("digits 5-9", digits_zip("train", "56789"), digits_zip("test", "56789"))
        source = system.api("POST", "/api/projects", {"name": "0-4", "dataset": low["id"], "layers": layers, **common})
        source_history = system.train(source["id"], args.iterations, args.workers)
        runs = {
            "scratch": {"name": "5-9 scratch", "dataset": high["id"], "layers": layers, **common},
            "transfer": {"name": "5-9 transfer", "dataset": high["id"], "from": source["id"], "head": "replace", **common},
            "transfer_frozen_conv": {"name": "5-9 frozen", "dataset": high["id"], "from": source["id"], "head": "replace",
                                     "lr_multipliers": [1, 0, 1, 0, 1, 1], **common},
        }
        results = {}
        for key, body in runs.items():
            project = system.api("POST", "/api/projects", body)
            history = system.train(project["id"], args.iterations, args.workers)
            at = {n: tested_at(history, n) for n in CHECKPOINTS if n <= args.iterations}
            results[key] = {n: accuracy for n, (_done, accuracy) in at.items()}
            results[key]["evaluated_at"] = {n: done for n, (done, _accuracy) in at.items()}
            results[key]["examples"] = int(sum(m["examples_per_s"] * m["iteration_ms"] / 1000
                                               for m in history if m["iteration"] < args.iterations))
    source_accuracy = tested_at(source_history, args.iterations)[1]
    print(f"source: digits 0-4, {args.iterations} iterations: test accuracy {source_accuracy:.3f}")
    print(f"{'digits 5-9, test accuracy after':34}" + "".join(f"{n:>10}" for n in CHECKPOINTS) + f"{'examples':>12}")
    labels = {"scratch": "from scratch", "transfer": "transfer, new head",
              "transfer_frozen_conv": "transfer, new head, conv frozen"}
    for key, label in labels.items():
        row = results[key]
        print(f"{label:34}" + "".join(f"{row.get(n, float('nan')):>10.3f}" for n in CHECKPOINTS) + f"{row['examples']:>12,}")
    ratios = {f"transfer_over_scratch_{n}": round(results["transfer"][n] / results["scratch"][n], 3)
              for n in CHECKPOINTS if n <= args.iterations}
    print(json.dumps({"transfer": results, "source_accuracy": source_accuracy, **ratios,
                      "iteration_ms": args.iteration_ms, "workers": args.workers}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--iteration-ms", type=int, default=500)
    main(parser.parse_args())
