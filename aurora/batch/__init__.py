"""Batch captioning: every video of a data set, resumable, on one machine or a Ray cluster.

    from aurora.batch import caption_dataset
    rows = caption_dataset("videos/", "captions.jsonl", batch_size=16, workers=2)

- inputs.py      what to caption: a directory, a list of paths/URLs, a CSV/JSONL/parquet column
- captioner.py   decode one input; caption a batch with one model (a bad input becomes an error row)
- rows.py        the result row and its arrow schema
- results.py     JSONL / parquet written as rows finish; resume after a kill
- local.py       the local engine: DataLoader decoding workers + batched inference
- ray_engine.py  the Ray Data engine, and its map functions for your own Ray pipelines
- job.py         `caption_dataset`: inputs -> engine -> results, with a progress bar
- cli.py         `aurora caption-batch`
"""


def __getattr__(name):  # `caption_dataset` on first use: the CLI imports this package to build its parser
    if name == "caption_dataset":
        from aurora.batch.job import caption_dataset

        return caption_dataset
    raise AttributeError(f"module 'aurora.batch' has no attribute {name!r}")


__all__ = ["caption_dataset"]
