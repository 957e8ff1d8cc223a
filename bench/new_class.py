"""A new class grows a running MNIST project (issue 15): trained on digits 0–8, it gains the 9.

`python bench/new_class.py [--before 50] [--after 100] [--workers 1] [--iteration-ms 500]` runs
`mlitb serve` and `mlitb worker` processes: the MNIST convnet trains on digits 0–8 for `--before`
iterations; then, with the workers still connected, every training image of the 9 is appended with
`new_classes=1`, the net grows a tenth output at the next boundary and the workers reconnect. Every
10 iterations after the growth it downloads the closure and measures, with the numpy engine on all
2,000 shipped MNIST test images, the accuracy on the new class and on the old ones. Prints a table and
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.research_system import accuracy, digits_zip, mnist_test_set, running, wait
from mlitb.model.zoo import MNIST_CONVNET


def main(args: argparse.Namespace) -> None:
    layers = [dict(layer) for layer in MNIST_CONVNET]
    layers[-1]["num_classes"] = 9
    x, digits = mnist_test_set()
    new = digits == 9
    rows, closures = [], []
    with running() as system:
        nine = system.upload("digits 0-8", digits_zip("train", "012345678"), digits_zip("test", "012345678"))
        project = system.api("POST", "/api/projects", {
            "name": "0-8, then 9", "dataset": nine["id"], "layers": layers, "iteration_ms": args.iteration_ms,
            "eval_every": 10, "seed": 1, "optimizer": {"name": "adam", "learning_rate": 0.002}})
        pid = project["id"]
        system.train(pid, args.before, args.workers)
        workers = [system.worker(pid) for _ in range(args.workers)]
        system.api("POST", f"/api/projects/{pid}/start")
        wait(lambda: system.api("GET", f"/api/projects/{pid}")["iteration"] >= args.before + 3, 600, "training resumes")
        grown_manifest = system.append(nine["id"], digits_zip("train", "9"), new_classes=True)
        added = grown_manifest["splits"]["train"]["counts"]["9"]
        grown = wait(lambda: (p := system.api("GET", f"/api/projects/{pid}"))["param_count"] > project["param_count"] and p,
                     600, "the net grows")
        start = system.closure(pid).training.class_since[9]
        for k in range(0, args.after + 1, 10):
            goal = start + k
            wait(lambda goal=goal: system.api("GET", f"/api/projects/{pid}")["iteration"] >= goal, 1800, f"iteration {goal}")
            closures.append(system.closure(pid))  # measured afterwards, so training is not held up
        system.api("POST", f"/api/projects/{pid}/pause")
        system.stop_workers(workers)
    for closure in closures:
        right = accuracy(closure, x, digits)
        rows.append({"after": closure.training.iteration - start, "iteration": closure.training.iteration,
                     "new_class": float(right[new].mean()), "old_classes": float(right[~new].mean()),
                     "all": float(right.mean())})
    print(f"digits 0-8 for {args.before} iterations, then {added} training images of the 9 appended; the net grew "
          f"from {project['param_count']:,} to {grown['param_count']:,} parameters at iteration {start}")
    print(f"{'iterations since growth':>24}{'new class (9)':>15}{'old (0-8)':>12}{'all 10':>10}")
    for row in rows:
        print(f"{row['after']:>24}{row['new_class']:>15.3f}{row['old_classes']:>12.3f}{row['all']:>10.3f}")
    print(json.dumps({"new_class": rows, "grown_at": start, "appended": added, "before": args.before,
                      "iteration_ms": args.iteration_ms, "workers": args.workers}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=int, default=50)
    parser.add_argument("--after", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--iteration-ms", type=int, default=500)
    main(parser.parse_args())
