"""Every limit and default of the master in one place, so tests and `mlitb serve` set them explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import ClassVar

from mlitb.master.prediction import ChunkPolicy

STATIC_DIR = Path(str(files("mlitb") / "static"))  # package data: works from a wheel as from a checkout


@dataclass(frozen=True)
class Settings:
    """The master's configuration. Only `admin_token` and `data_url` have no sensible default."""

    zero_means_off: ClassVar[tuple[str, ...]] = ("verify_queue",)  # MLITB_VERIFY_QUEUE=0: no spot checks

    admin_token: str
    data_url: str
    # WebSocket trust limits: protocol.md `welcome.limits` and error codes.
    max_frame_bytes: int = 64 * 1024 * 1024
    max_connections: int = 1000
    max_bad_frames: int = 10
    # Only a sanity bound against overflow: robust aggregation clips what is merely large (security.md).
    max_grad_norm_per_example: float = 1e8
    cache_shards: int = 64
    # A slow client gets at most this many undelivered control frames before it is dropped;
    # per-iteration frames (params, work) are coalesced, so they never pile up.
    max_pending_frames: int = 256
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    # Projects.
    min_iteration_ms: int = 100
    max_iteration_ms: int = 60_000
    eval_every: int = 10
    eval_max_examples: int = 2000
    # A checkpoint every N iterations or every S seconds, whichever comes first (checkpointer.py);
    # at shutdown, wait this long for the store before giving up on the last checkpoints.
    checkpoint_every: int = 20
    checkpoint_interval_s: float = 3.0
    checkpoint_flush_s: float = 10.0
    # A failing loop is restarted after backoff, backoff*2, ...; after this many failures in a row, paused.
    loop_tries: int = 3
    loop_backoff_s: float = 0.5
    metrics_history: int = 100_000
    # How often the master reads its projects' manifests from the store, to train on appended
    # examples (data step) and to pause a project whose dataset was deleted (datawatch.py).
    dataset_poll_s: float = 2.0
    default_project: str | None = None
    # Every result refused for this many iterations in a row: the project shows an error (source "trust").
    refused_iterations_error: int = 10
    # Spot checks: results recomputed at once at most (more are dropped and counted), tolerance (verification.py).
    verify_queue: int = 4
    verify_tolerance: float = 1e-3
    # Denial of service (docs/security.md): what an unauthenticated request may cost.
    max_body_bytes: int = 1 << 20  # any HTTP request body but a closure upload
    max_closure_bytes: int = 256 << 20  # POST /api/projects/from-closure
    http_read_timeout_s: float = 10.0  # request headers, and each read of a body, must arrive within this
    http_idle_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this
    hello_timeout_s: float = 20.0  # a WebSocket that sends no hello within this is closed
    max_control_bytes: int = 1 << 20  # a WebSocket message before welcome, from a tracker, or not a result
    result_overhead_bytes: int = 64 << 10  # a trainer's result may be 4 x P bytes plus this
    max_layers: int = 100  # layer definitions of a model
    max_params: int = 10_000_000  # parameters of a model (40 MB as float32, per copy in a volunteer's browser)
    max_projects: int = 100
    static_dir: Path = STATIC_DIR
    # POST /api/projects/{id}/predict (docs/api.md). The body limit is this endpoint's own: an image batch
    # is far larger than any other request body, so the HTTP body limit must exempt this route or use it.
    predict_max_images: int = 10_000
    predict_max_body_bytes: int = 64 * 1024 * 1024
    predict_max_image_pixels: int = 4096 * 4096  # a decoded upload larger than this is refused (decompression bombs)
    predict_rate_per_minute: float = 120.0  # requests per client address, refilled continuously...
    predict_rate_burst: int = 30  # ...up to this many at once
    predict_timeout_s: float = 120.0  # a request not answered by then is a 504
    # How a batch is split over the workers (prediction.py ChunkPolicy).
    predict_chunk_ms: float = 50.0
    predict_slots: int = 3
    predict_chunk_timeout_ms: float = 5000.0  # a chunk's deadline floor (at least 2 iterations of its project)
    predict_split: bool = True  # False: each request whole to one worker (the hot-spot baseline, for bench/)
    # Spot checks of prediction answers (trust.py's sampling): every one of a connection's first N answers
    # is recomputed by the master before it is accepted, then a fraction decaying to the floor.
    predict_check_first: int = 5
    predict_check_floor: float = 0.05

    def chunk_policy(self) -> ChunkPolicy:
        return ChunkPolicy(target_ms=self.predict_chunk_ms, slots=self.predict_slots,
                           deadline_floor_ms=self.predict_chunk_timeout_ms, split=self.predict_split)
