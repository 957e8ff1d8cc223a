"""The worker's status line: live on a terminal, throttled plain lines in a log."""

from __future__ import annotations

import io

from mlitb.worker.status import Progress, StatusLine, summarize


def training(slot: int, **fields) -> Progress:
    values = dict(iteration=12, examples_per_s=1000.0, loss=0.5, budget_ms=400, shards=4, results=3)
    return Progress(slot=slot, state="training", **{**values, **fields})


def test_summary_adds_speeds_and_shards_and_averages_loss():
    line = summarize({0: training(0), 1: training(1, iteration=13, loss=0.3, budget_ms=380)})
    assert line == "2 trainers · iteration 13 · 2,000 examples/s · loss 0.4000 · budget 400 ms · 8 shards · 6 results"


def test_summary_names_states_of_trainers_not_training():
    line = summarize({0: training(0), 1: Progress(slot=1, state="downloading")})
    assert line.startswith("2 trainers · iteration 12")
    assert line.endswith("· downloading")
    assert summarize({0: Progress(slot=0, state="connecting")}) == "1 trainer · connecting"


def test_tty_rewrites_one_line_in_place():
    out = io.StringIO()
    status = StatusLine(out, tty=True)
    status.update(training(0))
    status.update(training(0, iteration=13))
    status.message("trainer 0: left")
    status.close()
    text = out.getvalue()
    assert "\n" not in text.split("trainer 0: left")[0]
    assert text.count("\r") >= 3
    assert "iteration 13" in text


def test_log_lines_are_throttled_but_state_changes_always_show():
    out = io.StringIO()
    now = [0.0]
    status = StatusLine(out, tty=False, log_every_s=10, clock=lambda: now[0])
    status.update(Progress(slot=0, state="connecting"))
    status.update(training(0))
    for i in range(5):
        now[0] += 1
        status.update(training(0, iteration=13 + i))
    now[0] += 10
    status.update(training(0, iteration=30))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "connecting" in lines[0] and "iteration 12" in lines[1] and "iteration 30" in lines[2]
    assert "\r" not in out.getvalue()
