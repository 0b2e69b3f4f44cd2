"""Aurora as an lmms-eval model: `python -m lmms_eval --model aurora --model_args
pretrained=PATH,num_frames=16,token_kept_ratio=0.2 --tasks ...`.

lmms-eval finds plugin models through the `lmms_eval.models` entry-point group; `manifests()`
returns the one to register (`aurora = "aurora.eval.lmms_plugin:manifests"` under
[project.entry-points."lmms_eval.models"] in pyproject.toml). The class is defined only when
lmms-eval is importable (`AuroraLMMS`); the request handling is in plain functions over a loaded
model so it can be tested without lmms-eval.

generate_until: each request is (context, generation kwargs, doc_to_visual, doc_id, task, split);
its visuals (video paths or PIL images) go in one user turn before the context, and requests with
the same generation kwargs are batched. loglikelihood: the sum of log-probabilities of the
continuation's tokens after the rendered prompt and the template's answer opening, and whether
greedy decoding would have produced them.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from aurora import media
from aurora.generation import GenerationOptions

try:  # lmms-eval is optional; without it only the helpers below exist
    from lmms_eval.api.model import lmms as _LMMSBase
except ImportError:  # pragma: no cover - depends on the environment
    _LMMSBase = None
try:
    from lmms_eval.api.instance import GenerationResult as _GenerationResult
except ImportError:  # older lmms-eval, or none
    _GenerationResult = None


def _pair(value: tuple[float, bool]):
    """A (logprob, is_greedy) pair as lmms-eval's evaluator keeps it: lmms-eval 0.7.3 turns every
    model output that is not a str or a GenerationResult into its str() (api/instance.py,
    unwrap_generation_output), which breaks loglikelihood tasks; inside a GenerationResult the pair
    is handed to the task unchanged."""
    return _GenerationResult(text=value) if _GenerationResult is not None else value


def manifests():
    """Entry point for lmms-eval's model registry (group `lmms_eval.models`)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id="aurora", simple_class_path="aurora.eval.lmms_plugin.AuroraLMMS")]


def to_visual(value):
    """An lmms-eval visual (path, PIL image, or Aurora Frames) as something `VideoLLM` accepts."""
    if isinstance(value, (str, os.PathLike, media.Frames)):
        return value
    if hasattr(value, "convert"):  # a PIL image
        array = np.asarray(value.convert("RGB"), dtype=np.uint8)[None]  # (1, H, W, 3)
        return media.Frames(array=array, indices=[0], timestamps=[0.0], total_frames=1, fps=None, duration=None,
                            path="", is_image=True)
    raise TypeError(f"unsupported visual for Aurora: {type(value).__name__}")


def messages_for(visuals: list, context: str) -> list[dict]:
    parts = [{"type": "video", "video": to_visual(v)} for v in visuals]
    return [{"role": "user", "content": parts + [{"type": "text", "text": context}]}]


def options_from(gen_kwargs: dict, default_max_new_tokens: int | None) -> GenerationOptions:
    """lmms-eval generation kwargs -> GenerationOptions (until -> stop strings)."""
    until = gen_kwargs.get("until") or ()
    until = (until,) if isinstance(until, str) else tuple(until)
    temperature = float(gen_kwargs.get("temperature", 0.0) or 0.0)
    if not gen_kwargs.get("do_sample", temperature > 0):
        temperature = 0.0
    return GenerationOptions(temperature=temperature, top_p=float(gen_kwargs.get("top_p", 1.0) or 1.0),
                             num_beams=int(gen_kwargs.get("num_beams", 1) or 1),
                             max_new_tokens=gen_kwargs.get("max_new_tokens") or default_max_new_tokens,
                             stop=until)


def generate(model, requests: list[tuple], num_frames=None, token_kept_ratio=None, batch_size: int = 1,
             max_new_tokens: int | None = None) -> list[str]:
    """requests: (visuals, context, gen_kwargs) -> one text each, batched by identical kwargs."""
    texts: list[str | None] = [None] * len(requests)
    groups: dict[str, list[int]] = {}
    for i, (_, _, gen_kwargs) in enumerate(requests):
        groups.setdefault(repr(sorted(gen_kwargs.items())), []).append(i)
    for members in groups.values():
        options = options_from(requests[members[0]][2], max_new_tokens)
        for start in range(0, len(members), batch_size):
            chunk = members[start:start + batch_size]
            conversations = [messages_for(requests[i][0], requests[i][1]) for i in chunk]
            replies = model.respond_batch(conversations, num_frames, None, token_kept_ratio, options)
            for i, reply in zip(chunk, replies):
                texts[i] = reply.text
    return texts


@torch.inference_mode()
def loglikelihood(model, visuals: list, context: str, continuation: str, num_frames=None,
                  token_kept_ratio=None) -> tuple[float, bool]:
    """(sum of log p(continuation tokens | prompt), whether greedy decoding gives them)."""
    inputs_embeds, _ = model.prepare(messages_for(visuals, context), num_frames, None, token_kept_ratio)  # (1, L, D)
    head = model.template.answer.split("{content}")[0]  # text the template puts before an answer
    tokenizer = model.tokenizer
    before = tokenizer.encode(head, add_special_tokens=False)
    ids = tokenizer.encode(head + continuation, add_special_tokens=False)[len(before):]
    if not ids:
        return 0.0, True
    embed = model.language_model.get_input_embeddings()
    extra = embed(torch.tensor(before + ids, device=model.device))[None].to(inputs_embeds.dtype)  # (1, n, D)
    logits = model.language_model(inputs_embeds=torch.cat([inputs_embeds, extra], dim=1)).logits[0]  # (L+n, V)
    predicting = logits[-len(ids) - 1:-1].float()  # rows that predict each continuation token
    target = torch.tensor(ids, device=predicting.device)
    logprobs = torch.log_softmax(predicting, dim=-1).gather(1, target[:, None])[:, 0]
    return float(logprobs.sum()), bool((predicting.argmax(dim=-1) == target).all())


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


if _LMMSBase is not None:

    class AuroraLMMS(_LMMSBase):
        """lmms-eval model `aurora`: any Aurora checkpoint with its preset's preprocessing."""

        is_simple = True

        def __init__(self, pretrained: str, num_frames: int | None = None, token_kept_ratio: float | None = None,
                     device: str = "auto", dtype: str = "auto", batch_size: int | str = 1,
                     max_new_tokens: int | None = None, trust_remote_code: bool = False, **kwargs):
            super().__init__()
            import aurora

            if device and device.startswith("cuda") and not torch.cuda.is_available():
                device = "auto"
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            if device in (None, "auto", "cuda") and torch.cuda.is_available():
                device = f"cuda:{local_rank}"
            self.model = aurora.load(pretrained, device=device or "auto", dtype=dtype,
                                     trust_remote_code=trust_remote_code)
            self.num_frames = int(num_frames) if num_frames else None
            self.token_kept_ratio = float(token_kept_ratio) if token_kept_ratio else None
            self.batch_size_per_gpu = int(batch_size) if str(batch_size).isdigit() else 1
            self.max_new_tokens = int(max_new_tokens) if max_new_tokens else None
            self._rank = int(os.environ.get("RANK", "0"))
            self._world_size = int(os.environ.get("WORLD_SIZE", "1"))

        @property
        def batch_size(self) -> int:
            return self.batch_size_per_gpu

        def _doc(self, task, split, doc_id):
            return self.task_dict[task][split][doc_id]

        def generate_until(self, requests) -> list[str]:
            prepared = []
            for context, gen_kwargs, doc_to_visual, doc_id, task, split in (r.args for r in requests):
                visuals = _as_list(doc_to_visual(self._doc(task, split, doc_id))) if doc_to_visual else []
                prepared.append((visuals, context, dict(gen_kwargs or {})))
            return generate(self.model, prepared, self.num_frames, self.token_kept_ratio, self.batch_size,
                            self.max_new_tokens)

        def loglikelihood(self, requests) -> list[tuple[float, bool]]:
            results = []
            for context, doc_to_target, doc_to_visual, doc_id, task, split in (r.args for r in requests):
                doc = self._doc(task, split, doc_id)
                continuation = doc_to_target if isinstance(doc_to_target, str) else doc_to_target(doc)
                if isinstance(continuation, list):
                    continuation = continuation[0]
                visuals = _as_list(doc_to_visual(doc)) if doc_to_visual else []
                results.append(_pair(loglikelihood(self.model, visuals, context, str(continuation),
                                                   self.num_frames, self.token_kept_ratio)))
            return results

        def generate_until_multi_round(self, requests) -> list[str]:
            raise NotImplementedError("multi-round generation is not supported by the Aurora plugin yet")
