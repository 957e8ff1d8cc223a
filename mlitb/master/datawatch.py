"""Datasets that change under running projects: grown by appends, or deleted.

The master and the data server share the store, so the master learns about a
dataset's new revision by reading its manifest every `Settings.dataset_poll_s`
seconds, in a task of its own (never in a project's loop, which must not
await I/O). A newer manifest is handed to the runtime; the loop's data step
then allocates its new shards. A dataset that vanished pauses its running
projects with an error the API shows, instead of leaving them training on
shards nobody can download any more.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

from mlitb.data.catalog import get_manifest_bytes
from mlitb.data.manifest import Manifest
from mlitb.store import StoreUnavailable

if TYPE_CHECKING:
    from mlitb.master.registry import Registry

log = logging.getLogger("mlitb.master")


async def watch_datasets(registry: Registry, interval_s: float) -> None:
    """Check the datasets every `interval_s` seconds until cancelled; a store outage only skips a round."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await check_datasets(registry)
        except StoreUnavailable as exc:
            log.warning("dataset check skipped: the store is unavailable (%s)", exc)


async def check_datasets(registry: Registry) -> None:
    """One round: every hosted project gets its dataset's newest manifest, or is paused if it is gone."""
    by_dataset = defaultdict(list)
    for rt in registry.projects.values():
        by_dataset[rt.definition.dataset].append(rt)
    for dataset_id, projects in by_dataset.items():
        raw = await get_manifest_bytes(registry.store, dataset_id)
        if raw is None:
            for rt in projects:
                await registry.fail(rt, f"dataset {dataset_id!r} was deleted from the data server: "
                                        "training is paused; create a project on another dataset")
            continue
        manifest = Manifest.from_json(raw)
        for rt in projects:
            if manifest.revision > rt.manifest.revision:
                log.info("project %s: dataset %s revision %d", rt.id, dataset_id, manifest.revision)
                rt.adopt_manifest(manifest)
