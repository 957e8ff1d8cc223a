"""The data server: ingest zipped image datasets once, serve immutable zipped shards.

Public entry points other parts use:

* `mlitb.data.shards.decode_shard(blob) -> Shard` (pixels uint8 (N,H,W,C), labels int64 (N,))
* `mlitb.data.manifest.Manifest` (the dataset's manifest, `Manifest.from_json`)
* `mlitb.data.catalog.ensure_shipped_datasets(store)` (ingest the shipped MNIST into an empty store)
* `mlitb.data.app.create_data_app(store, admin_token, ...)` (the Starlette app)

See docs/data.md.
"""
