"""What a model answers: a `Reply` (text, frames used, token counts, stage times), and a
`ReplyStream` that yields text deltas while the answer is generated in a thread."""

from __future__ import annotations

import queue
import threading
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator


@dataclass
class Reply:
    """One answer with what it took: the text, the frames used, token counts and stage times."""

    text: str
    model: str
    frame_indices: list[list[int]] = field(default_factory=list)  # per visual
    frame_timestamps: list[list[float]] = field(default_factory=list)
    visual_tokens_per_frame: list[int] = field(default_factory=list)  # per visual: tokens per block
    # per visual: tokens after each stage, {"patches", "encoder" (after ToMe), "language_model"}; under
    # "reuse" (Qwen2-VL) also "encoder_computed": the encoder's tokens it computed, not copied
    visual_tokens: list[dict[str, int]] = field(default_factory=list)
    clips: list[list[list[float]]] = field(default_factory=list)  # per visual read as clips: [start, end] s each
    reduction: str = ""  # the reducer method the visual tokens were reduced with (aurora.vision.reduce.METHODS)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    finish_reason: str = ""  # stop / length / cancelled
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    # mixture-of-experts models: the expert each gate chose ({"experts", "weights", "histogram"}); {} otherwise
    routing: dict = field(default_factory=dict)
    audio: list[str] = field(default_factory=list)  # per visual, for models with an audio branch: how its sound was used

    def to_dict(self) -> dict:
        return asdict(self)


class ReplyStream:
    """Iterate over text deltas as they are generated; `.reply` holds the full Reply afterwards."""

    def __init__(self, run: Callable[[Callable[[str], None]], Reply]):
        self._queue: queue.Queue = queue.Queue()
        self.reply: Reply | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(run,), daemon=True)
        self._thread.start()

    def _work(self, run):
        try:
            self.reply = run(self._queue.put)
        except BaseException as e:  # handed to the consumer's thread below
            self._error = e
        finally:
            self._queue.put(None)

    def __iter__(self) -> Iterator[str]:
        while (delta := self._queue.get()) is not None:
            yield delta
        self._thread.join()
        if self._error is not None:
            raise self._error
