"""The local engine: inputs decoded in worker processes (torch's DataLoader) while the model
captions the previous batch on its device, so decoding and inference overlap.

`workers=0` decodes in the main process, one input after another (no overlap).
"""

from __future__ import annotations

from typing import Callable

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
    for item in loader:
        pending.append(item)
        if len(pending) >= captioner.batch_size:
            on_rows(captioner(pending))
            pending = []
    if pending:
        on_rows(captioner(pending))
