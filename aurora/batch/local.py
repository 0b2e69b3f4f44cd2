"""The local engine: inputs decoded in worker processes (torch's DataLoader) while the model
captions the previous batch on its device, so decoding and inference overlap.

`workers=0` decodes in the main process, one input after another (no overlap). With a model on
the CPU, inference takes the cores the decoding workers leave (torch threads = cores - workers):
oversubscribed OpenMP threads spin against the decoders (on 2 cores with 1 worker, 2 torch
threads made the default model's batch job 5x slower than 1).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from aurora.batch.captioner import Captioner, Decoded, FrameSettings, decode


class _Decoding(Dataset):
    def __init__(self, references: list[str], frames: FrameSettings):
        self.references, self.frames = references, frames

    def __len__(self) -> int:
        return len(self.references)

    def __getitem__(self, index: int) -> Decoded:
        return decode(self.references[index], self.frames)


def _as_is(item: Decoded) -> Decoded:  # no collation: items stay `Decoded`, frames stay numpy
    return item


def run_local(references: list[str], captioner: Captioner, frames: FrameSettings, workers: int,
              on_rows: Callable[[list[dict]], None]) -> None:
    """Caption `references` in input order, handing each batch's rows to `on_rows` as it finishes."""
    loader = DataLoader(
        _Decoding(references, frames),
        batch_size=None,  # one input per worker call: the batch is assembled here, so it can shrink
        collate_fn=_as_is,
        num_workers=workers,
        prefetch_factor=max(2, -(-2 * captioner.batch_size // workers)) if workers else None,  # ~2 batches ahead
    )
    pending: list[Decoded] = []
    with _threads_left_by(workers, captioner.model):
        for item in loader:
            pending.append(item)
            if len(pending) >= captioner.batch_size:
                on_rows(captioner(pending))
                pending = []
        if pending:
            on_rows(captioner(pending))


@contextmanager
def _threads_left_by(workers: int, model):
    """torch's CPU threads = the cores the decoding workers leave, while the job runs."""
    before = torch.get_num_threads()
    on_cpu = getattr(getattr(model, "device", None), "type", "cpu") == "cpu"
    if on_cpu and workers:
        torch.set_num_threads(max(1, min(before, len(os.sched_getaffinity(0)) - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
