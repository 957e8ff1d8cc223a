"""A dataset's manifest: what a client needs to know before fetching shards.

The manifest is the dataset's commit record: it is written to the store after
every shard, in the same `put_many`, so a dataset exists exactly when its
manifest does. Its JSON is the contract with the master and the browser
(docs/data.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

VERSION = 1


@dataclass(frozen=True)
class ShardRef:
    """One shard of a split: content id, examples in it, size of its zip."""

    id: str
    count: int
    bytes: int


@dataclass(frozen=True)
class Split:
    """The shards of one split and how many examples of each class they hold."""

    shards: tuple[ShardRef, ...]
    class_counts: tuple[int, ...]

    @property
    def count(self) -> int:
        return sum(self.class_counts)


@dataclass(frozen=True)
class Manifest:
    """A dataset: classes (names sorted at upload, then any added by appends), shape [H, W, C], splits."""

    id: str
    name: str
    classes: tuple[str, ...]
    shape: tuple[int, int, int]
    train: Split
    test: Split
    shard_size: int
    created: str
    revision: int = 0
    """How many appends (POST /datasets/{id}/examples) the dataset has had: the master watches it."""
    updated: str | None = None
    """When the last append was written; None means never (then it reads as `created`)."""

    @property
    def shard_ids(self) -> list[str]:
        return [ref.id for ref in self.train.shards + self.test.shards]

    def to_dict(self) -> dict:
        return {
            "version": VERSION,
            "id": self.id,
            "name": self.name,
            "classes": list(self.classes),
            "shape": list(self.shape),
            "shard_size": self.shard_size,
            "created": self.created,
            "revision": self.revision,
            "updated": self.updated or self.created,
            "count": self.train.count + self.test.count,
            "splits": {"train": _split_dict(self.train, self.classes), "test": _split_dict(self.test, self.classes)},
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        raw = json.loads(data)
        classes = tuple(raw["classes"])
        return cls(
            id=raw["id"],
            name=raw["name"],
            classes=classes,
            shape=tuple(raw["shape"]),
            train=_split_from(raw["splits"]["train"], classes),
            test=_split_from(raw["splits"]["test"], classes),
            shard_size=raw["shard_size"],
            created=raw["created"],
            revision=raw.get("revision", 0),
            updated=raw.get("updated"),
        )


def _split_dict(split: Split, classes: tuple[str, ...]) -> dict:
    return {
        "count": split.count,
        "counts": dict(zip(classes, split.class_counts)),
        "shards": [{"id": ref.id, "count": ref.count, "bytes": ref.bytes} for ref in split.shards],
    }


def _split_from(raw: dict, classes: tuple[str, ...]) -> Split:
    return Split(
        shards=tuple(ShardRef(id=s["id"], count=s["count"], bytes=s["bytes"]) for s in raw["shards"]),
        class_counts=tuple(raw["counts"][name] for name in classes),
    )


def dataset_id(name: str, classes: tuple[str, ...], shape: tuple[int, int, int], shard_ids: list[str]) -> str:
    """A readable, content-derived id: the same upload gets the same id on any server."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "dataset"
    content = json.dumps([name, list(classes), list(shape), shard_ids]).encode()
    return f"{slug}-{hashlib.sha256(content).hexdigest()[:10]}"
