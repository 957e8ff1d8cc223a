"""`GET /metrics` in the Prometheus text format: one line per project and series."""

from __future__ import annotations

from collections.abc import Iterable

from mlitb.master.connection import ConnectionStats
from mlitb.master.runtime import ProjectRuntime

DROP_REASONS = ("old", "late", "unsolicited", "untrusted", "implausible_count", "implausible_time")


def render(projects: Iterable[ProjectRuntime], stats: ConnectionStats) -> str:
    lines: list[str] = []

    def series(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    projects = list(projects)

    def per_project(get) -> list[tuple[str, float]]:
        return [(f'{{project="{rt.id}"}}', get(rt)) for rt in projects]

    series("mlitb_iteration", "gauge", "Iteration the project is at.", per_project(lambda rt: rt.iteration))
    series("mlitb_iterations_total", "counter", "Iterations completed since the master started.",
           per_project(lambda rt: rt.counters.iterations))
    series("mlitb_examples_total", "counter", "Examples whose gradients were applied.",
           per_project(lambda rt: rt.counters.examples))
    series("mlitb_examples_per_second", "gauge", "Examples per second in the last iteration.",
           per_project(lambda rt: rt.counters.examples_per_s))
    series("mlitb_iteration_duration_seconds", "gauge", "Wall time of the last iteration.",
           per_project(lambda rt: rt.counters.last_iteration_s))
    series("mlitb_trainers", "gauge", "Connected trainers.", per_project(lambda rt: len(rt.workers)))
    series("mlitb_trackers", "gauge", "Connected trackers.", per_project(lambda rt: len(rt.trackers)))
    series("mlitb_results_accepted_total", "counter", "Results applied to the parameters.",
           per_project(lambda rt: rt.counters.accepted))
    series("mlitb_results_dropped_total", "counter",
           "Results not applied: old iteration, after the deadline, without outstanding work, from an excluded "
           "or banned client, or with a count or compute time the master cannot believe.",
           [(f'{{project="{rt.id}",reason="{reason}"}}', rt.counters.dropped[reason]) for rt in projects for reason in DROP_REASONS])
    series("mlitb_results_outliers_total", "counter", "Applied results far above the iteration's median norm (clipped).",
           per_project(lambda rt: rt.counters.outliers))
    series("mlitb_spot_checks_total", "counter", "Results recomputed by the verifier (passed, failed) or not (dropped).",
           [(f'{{project="{rt.id}",outcome="{outcome}"}}', rt.counters.checks[outcome]) for rt in projects
            for outcome in ("passed", "failed", "dropped")])
    series("mlitb_results_missed_total", "counter", "Work whose result did not arrive by the deadline.",
           per_project(lambda rt: rt.counters.missed))
    series("mlitb_test_accuracy", "gauge", "Latest server-side test accuracy.",
           [(f'{{project="{rt.id}"}}', acc) for rt in projects if (acc := _latest_test_accuracy(rt)) is not None])
    series("mlitb_connections", "gauge", "Open WebSocket connections.", [("", stats.open)])
    series("mlitb_connections_total", "counter", "WebSocket connections accepted.", [("", stats.total)])
    series("mlitb_connections_refused_total", "counter", "Connections refused at the limit.", [("", stats.refused)])
    series("mlitb_bad_frames_total", "counter", "Client frames refused by validation.", [("", stats.bad_frames)])
    series("mlitb_frames_too_large_total", "counter", "Client messages refused from their frame header (over the connection's limit).",
           [("", stats.too_large)])
    series("mlitb_clients_dropped_total", "counter", "Clients dropped for too many bad frames.", [("", stats.dropped)])
    return "\n".join(lines) + "\n"


def _latest_test_accuracy(rt: ProjectRuntime) -> float | None:
    for record in reversed(rt.metrics):
        if record.get("test_accuracy") is not None:
            return record["test_accuracy"]
    return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
