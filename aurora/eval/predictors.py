"""The model under test: an Aurora model (batched) or any OpenAI-compatible chat endpoint.

Both answer a list of `Query`s with one `Answer` each. Frames come from `aurora.media` — the
model's own settings (--num-frames / --fps), or the benchmark's fixed choice (`Query.frames`).
"""

from __future__ import annotations

import base64
import io
import mimetypes
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

from aurora import media
from aurora.eval.chat_client import ChatClient
from aurora.eval.frames import load_frames
from aurora.eval.task import Query
from aurora.generation import GenerationOptions


@dataclass
class Answer:
    text: str
    seconds: float  # wall time of the call that produced it, divided by the queries it answered
    info: dict = field(default_factory=dict)  # frames used, token counts, finish reason


class AuroraPredictor:
    """Answers with a loaded `VideoLLM`, `batch_size` queries per generate call."""

    def __init__(self, model, num_frames: int | None = None, fps: float | None = None,
                 token_kept_ratio: float | None = None, options: GenerationOptions | None = None,
                 batch_size: int = 1, source: str | None = None):
        self.model, self.num_frames, self.fps = model, num_frames, fps
        self.token_kept_ratio = model.preset.reducer.token_kept_ratio if token_kept_ratio is None else token_kept_ratio
        self.options = options or GenerationOptions()
        self.batch_size, self.source = max(1, batch_size), source

    def describe(self) -> dict:
        preset = self.model.preset
        return {"kind": "aurora", "name": self.model.name, "path": self.source,
                "num_frames": self.num_frames or preset.media.num_frames, "fps": self.fps, "sampling": preset.media.sampling,
                "token_kept_ratio": self.token_kept_ratio, "template": preset.template.name,
                "generation": asdict(self.options), "batch_size": self.batch_size}

    def answer(self, queries: list[Query]) -> list[Answer]:
        answers: list[Answer | None] = [None] * len(queries)
        groups: dict[tuple, list[int]] = {}  # one generate call never mixes prefixes or token limits
        for i, query in enumerate(queries):  # nor templates
            key = (query.prefix, self.options.max_new_tokens or query.max_new_tokens, query.template, query.stop)
            groups.setdefault(key, []).append(i)
        for (prefix, max_new_tokens, template, stop), members in groups.items():
            options = replace(self.options, max_new_tokens=max_new_tokens, stop=tuple(self.options.stop) + stop)
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                for i, answer in zip(chunk, self._generate([queries[i] for i in chunk], prefix, options, template)):
                    answers[i] = answer
        return answers

    def _generate(self, queries: list[Query], prefix: str, options: GenerationOptions,
                  template: str | None = None) -> list[Answer]:
        began = time.perf_counter()
        size = getattr(self.model, "decode_size", None)  # decoded as the model's own loader does
        visuals = [load_frames(q.video, q.frames, size) if q.frames else q.video for q in queries]
        num_frames = self.num_frames
        conversations = [[{"role": "user", "content": [{"type": "video", "video": visual},
                                                        {"type": "text", "text": q.prompt}]}]
                         for visual, q in zip(visuals, queries)]
        if prefix:  # a final assistant message is continued: the answer starts pre-filled (MVBench)
            conversations = [c + [{"role": "assistant", "content": prefix}] for c in conversations]
        conversations = [([{"role": "system", "content": q.system}] if q.system else []) + c
                         for q, c in zip(queries, conversations)]
        replies = self.model.respond_batch(conversations, num_frames, self.fps, self.token_kept_ratio, options,
                                           template=template)
        seconds = (time.perf_counter() - began) / len(queries)
        return [Answer(r.text, seconds, {"frame_indices": r.frame_indices[0] if r.frame_indices else [],
                                         "visual_tokens_per_frame": r.visual_tokens_per_frame[0]
                                         if r.visual_tokens_per_frame else 0,
                                         "prompt_tokens": r.prompt_tokens, "generated_tokens": r.generated_tokens,
                                         "finish_reason": r.finish_reason}) for r in replies]


class EndpointPredictor:
    """Answers through an OpenAI-compatible chat endpoint, `concurrency` requests at a time.

    media "frames": the sampled frames as image parts (base64 data URLs); "video": the file as a
    `video_url` part (base64 data URL) with `num_frames` / `fps` in the body, both as Aurora's and
    vLLM's server read them (top level, and `media_io_kwargs.video`) — except where the benchmark fixes the frames (MVBench
    windows, frame folders), which are always sent as frames. An assistant prefix is sent as a
    final assistant message with vLLM/SGLang's `continue_final_message` extension.
    """

    def __init__(self, client: ChatClient, media_mode: str = "frames", num_frames: int = 8,
                 fps: float | None = None, options: GenerationOptions | None = None, concurrency: int = 4,
                 image_format: str = "jpeg"):
        self.client, self.media_mode, self.num_frames, self.fps = client, media_mode, num_frames, fps
        self.options = options or GenerationOptions()
        self.concurrency, self.image_format = max(1, concurrency), image_format

    def describe(self) -> dict:
        return {"kind": "endpoint", **self.client.describe(), "media": self.media_mode,
                "num_frames": self.num_frames, "fps": self.fps, "image_format": self.image_format,
                "generation": asdict(self.options)}

    def answer(self, queries: list[Query]) -> list[Answer]:
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(queries)))) as pool:
            return list(pool.map(self._one, queries))

    def _one(self, query: Query) -> Answer:
        began = time.perf_counter()
        parts, info = self._media_parts(query)
        messages = [{"role": "user", "content": parts + [{"type": "text", "text": query.prompt}]}]
        if query.system:
            messages.insert(0, {"role": "system", "content": query.system})
        extra = {}
        if info.get("media") == "video":  # the sampling the run records, in Aurora's and vLLM's fields
            sampling = {k: v for k, v in (("num_frames", self.num_frames), ("fps", self.fps)) if v is not None}
            extra.update(sampling, media_io_kwargs={"video": sampling})
        if query.prefix:
            messages.append({"role": "assistant", "content": query.prefix})
            extra.update(continue_final_message=True, add_generation_prompt=False)
        o = self.options
        text = self.client.complete(messages, temperature=o.temperature, top_p=o.top_p, seed=o.seed,
                                    max_tokens=o.max_new_tokens or query.max_new_tokens, **extra)
        return Answer(text, time.perf_counter() - began, info)

    def _media_parts(self, query: Query) -> tuple[list[dict], dict]:
        is_image = query.video.lower().endswith(media.IMAGE_EXTENSIONS)  # an image is always one image part
        if self.media_mode == "video" and query.frames is None and not is_image:
            mime = mimetypes.guess_type(query.video)[0] or "video/mp4"
            with open(query.video, "rb") as f:
                data = base64.b64encode(f.read()).decode()
            return [{"type": "video_url", "video_url": {"url": f"data:{mime};base64,{data}"}}], {"media": "video"}
        frames = (load_frames(query.video, query.frames) if query.frames
                  else media.load_visual(query.video, num_frames=self.num_frames, fps=self.fps))
        parts = [{"type": "image_url", "image_url": {"url": self._data_url(frame)}} for frame in frames.array]
        return parts, {"media": "frames", "frame_indices": list(frames.indices)}

    def _data_url(self, frame) -> str:
        from PIL import Image

        buffer = io.BytesIO()
        fmt = "PNG" if self.image_format == "png" else "JPEG"
        Image.fromarray(frame).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"
