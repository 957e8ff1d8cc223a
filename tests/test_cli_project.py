"""The whole project lifecycle from the command line, against a real one-port `mlitb serve`.

Every client command runs as its own process in the serve's directory and
finds the admin token in `var/admin-token`, as on a researcher's machine.
"""

from __future__ import annotations

from mlitb.cli.project import fit, parse_assignments, patch_body
from mlitb.model.zoo import MNIST_CONVNET
from tests.cli_lifecycle import run_every_command
from tests.cli_support import Serve


def test_templates_fit_the_dataset_and_set_splits_name_t_and_hyper_parameters():
    fitted = fit(MNIST_CONVNET, [32, 24, 3], 2)
    assert fitted[0] == {"type": "input", "out_sx": 24, "out_sy": 32, "out_depth": 3}
    assert fitted[-1] == {"type": "softmax", "num_classes": 2}
    assert MNIST_CONVNET[0]["out_depth"] == 1, "the template itself is left alone"
    values = parse_assignments(["learning_rate=0.01", "iteration_ms=400", "name=cats v2", "aggregation=mean"])
    assert patch_body(values) == {"name": "cats v2", "iteration_ms": 400, "aggregation": "mean",
                                  "optimizer": {"learning_rate": 0.01}}


def test_the_project_lifecycle_from_the_cli(tmp_path, mnist_dir):
    output = run_every_command(Serve(tmp_path / "home", ("--progress-every", "4")).start(mnist_dir), tmp_path)
    print(output)
