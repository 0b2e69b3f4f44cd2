"""The OpenAI chat-completions schema: parse a request body into a `ChatRequest`, build responses.

Request fields understood: `model` (optional; when given it must name the served model), `messages`
(roles system / developer / user / assistant; content a string or parts `text`, `image_url`,
`video_url`), `stream`, `stream_options.include_usage`, `temperature`, `top_p`, `max_tokens` /
`max_completion_tokens`, `stop` (string or list), `seed` (64-bit), `n` (1 only),
`continue_final_message` / `add_generation_prompt` (vLLM's: continue a pre-filled assistant message).
Per-request media options, as vLLM takes them: `num_frames`, `fps`, `token_kept_ratio`, at the top
level, inside `mm_processor_kwargs`, or (`num_frames`, `fps`) inside `media_io_kwargs.video`; and
Aurora's `reduction` (the reducer method for this request: tome, temporal, both, reuse) at the top
level or inside `mm_processor_kwargs`.
A `video_url` may be vLLM's frames-as-video data URL (`data:video/jpeg;base64,<frame>,<frame>,...`):
all its frames are used unless `num_frames` says otherwise. Other fields OpenAI clients send by default are ignored; ones that would
change the answer but are not supported (n > 1, logprobs, tools, penalties, logit_bias, JSON
response formats) are refused.

Responses follow OpenAI's `chat.completion` / `chat.completion.chunk` objects plus an `aurora`
object (see `aurora_extension`; in a stream, on the chunk that carries `finish_reason`) with the
frames used, visual tokens and time per stage.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

from aurora.serve.errors import APIError, bad_request
from aurora.vision.reduce import METHODS

MAX_FRAMES = 128  # per visual; keeps one request from decoding and encoding without bound
MAX_MEDIA_PARTS = 32  # images + videos per request (the server's --max-visuals default)
MAX_DEPTH = 64  # JSON nesting accepted in a request body
SEED_RANGE = (-(2**63), 2**63 - 1)  # vLLM's: a 64-bit signed integer
MAX_STOPS = 16
MEDIA_OPTIONS = ("num_frames", "fps", "token_kept_ratio", "reduction")
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_UNSUPPORTED = {  # field -> value that is fine (the default)
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "tools": (None, []),
    "functions": (None, []),
    "n": (None, 1),
    "frequency_penalty": (None, 0),
    "presence_penalty": (None, 0),
    "logit_bias": (None, {}),
}


@dataclass
class MediaRef:
    kind: str  # "image", "video" or "audio"
    url: str
    param: str  # where it sits in the request, for error messages
    frames: int | None = None  # frames in a frames-as-video data URL (all are used by default)


@dataclass
class ChatRequest:
    messages: list[dict]  # [{"role", "content": [("text", str) | MediaRef, ...]}]
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    generation: dict = field(default_factory=dict)  # temperature, top_p, max_new_tokens, seed, stop
    media: dict = field(default_factory=dict)  # num_frames, fps, token_kept_ratio, reduction (given ones only)
    continue_final_message: bool = False

    @property
    def media_refs(self) -> list[MediaRef]:
        return [part for m in self.messages for part in m["content"] if isinstance(part, MediaRef)]


def parse_chat_request(body: object, max_visuals: int = MAX_MEDIA_PARTS, audio: bool = False) -> ChatRequest:
    """A decoded JSON body -> ChatRequest; every problem is a 400 naming the offending field.
    `audio`: the model has an audio branch, so `input_audio` parts are taken."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    check_depth(body)
    for name, fine in _UNSUPPORTED.items():
        if body.get(name) not in fine:
            raise bad_request(f"{name}={body[name]!r} is not supported by this server", param=name)
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise bad_request("only text responses are supported (response_format type 'text')", param="response_format")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("model must be a string", param="model")
    stream = _bool(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("stream_options must be an object", param="stream_options")
    include_usage = bool(options and options.get("include_usage"))
    if include_usage and not stream:
        raise bad_request("stream_options is only allowed with stream: true", param="stream_options")
    continue_final = _bool(body, "continue_final_message")
    add_generation_prompt = body.get("add_generation_prompt", True)
    if not isinstance(add_generation_prompt, bool):
        raise bad_request("add_generation_prompt must be true or false", param="add_generation_prompt")
    if continue_final and add_generation_prompt:  # vLLM's rule and wording
        raise bad_request("Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
                          param="continue_final_message")
    request = ChatRequest(
        messages=_messages(body.get("messages"), continue_final, audio),
        model=model,
        stream=stream,
        include_usage=include_usage,
        generation=_generation(body),
        media=_media_options(body),
        continue_final_message=continue_final,
    )
    if len(request.media_refs) > max_visuals:
        raise bad_request(f"at most {max_visuals} images and videos per request, got {len(request.media_refs)}; "
                          f"send frames as one video, or start the server with a higher --max-visuals",
                          param="messages")
    return request


def check_depth(value: object, limit: int = MAX_DEPTH) -> None:
    """400 when JSON nests deeper than `limit` anywhere (ignored fields too); iterative, so a
    hostile body cannot exhaust the stack here or later."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise bad_request(f"the request JSON is nested deeper than {limit} levels")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def _messages(messages: object, continue_final: bool = False, audio: bool = False) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list", param="messages")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where} must be an object", param=where)
        role = message.get("role")
        role = ROLES.get(role) if isinstance(role, str) else None
        if role is None:
            raise bad_request(f"{where}.role must be one of {', '.join(ROLES)}, got {message.get('role')!r}", param=f"{where}.role")
        content = message.get("content")
        if isinstance(content, str):
            parts = [("text", content)]
        elif isinstance(content, list) and content:
            parts = [_part(part, f"{where}.content[{j}]", audio) for j, part in enumerate(content)]
        else:
            raise bad_request(f"{where}.content must be a string or a non-empty list of parts", param=f"{where}.content")
        if role != "user" and any(isinstance(p, MediaRef) for p in parts):
            raise bad_request(f"{where}: images and videos are only allowed in user messages", param=f"{where}.content")
        out.append({"role": role, "content": parts})
    last = out[-1]["role"]
    if continue_final and last != "assistant":
        raise bad_request("continue_final_message needs the last message to be from the assistant",
                          param=f"messages[{len(out) - 1}].role")
    if not continue_final and last != "user":
        raise bad_request("the last message must be from the user (or from the assistant with "
                          "continue_final_message: true and add_generation_prompt: false, to continue it)",
                          param=f"messages[{len(out) - 1}].role")
    return out


def _part(part: object, where: str, audio: bool = False):
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise bad_request(f"{where}.text must be a string", param=f"{where}.text")
        return ("text", part["text"])
    if kind in ("image_url", "video_url"):
        value = part.get(kind)
        url = value.get("url") if isinstance(value, dict) else value  # vLLM also takes a bare string
        if not isinstance(url, str) or not url:
            raise bad_request(f"{where}.{kind}.url must be a non-empty string", param=f"{where}.{kind}.url")
        ref = MediaRef(kind="image" if kind == "image_url" else "video", url=url, param=f"{where}.{kind}.url")
        if kind == "video_url" and url[:24].lower().startswith(("data:video/jpeg;base64,", "data:video/png;base64,")):
            ref.frames = url.count(",")  # frames-as-video: one comma after the header, one between frames
            if ref.frames > MAX_FRAMES:
                raise bad_request(f"a frames-as-video URL may hold at most {MAX_FRAMES} frames, got {ref.frames}",
                                  param=ref.param)
        return ref
    if kind == "input_audio" and not audio:
        raise bad_request(f"{where}: unsupported content part type 'input_audio': this model has no audio branch; "
                          "use text, image_url or video_url", param=f"{where}.type")
    if kind == "input_audio":  # OpenAI's: {"data": base64, "format": "wav" | "mp3" | ...}
        value = part.get("input_audio")
        data, audio_format = (value.get("data"), value.get("format")) if isinstance(value, dict) else (None, None)
        if not isinstance(data, str) or not data or not isinstance(audio_format, str) or not audio_format.isalnum():
            raise bad_request(f"{where}.input_audio must be {{\"data\": base64, \"format\": \"wav\" or \"mp3\"}}",
                              param=f"{where}.input_audio")
        return MediaRef(kind="audio", url=f"data:audio/{audio_format.lower()};base64,{data}", param=f"{where}.input_audio")
    raise bad_request(f"{where}: unsupported content part type {kind!r}; use text, image_url, video_url or input_audio",
                      param=f"{where}.type")


def _generation(body: dict) -> dict:
    out = {}
    temperature = _number(body, "temperature", 0.0, 2.0)
    if temperature is not None:
        out["temperature"] = temperature
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p is not None:
        if top_p == 0:
            raise bad_request("top_p must be in (0, 1]", param="top_p")
        out["top_p"] = top_p
    for name in ("max_completion_tokens", "max_tokens"):  # the newer name wins when both are given
        value = _integer(body, name, 1)
        if value is not None:
            out.setdefault("max_new_tokens", value)
    seed = _integer(body, "seed", *SEED_RANGE)
    if seed is not None:
        out["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
            raise bad_request(f"stop must be a non-empty string or a list of at most {MAX_STOPS} of them", param="stop")
        out["stop"] = tuple(stops)
    return out


def _media_options(body: dict) -> dict:
    """num_frames / fps / token_kept_ratio / reduction from the top level, mm_processor_kwargs and
    media_io_kwargs.video (vLLM's names for where they go)."""
    nested = body.get("mm_processor_kwargs")
    if nested is None:
        nested = {}
    if not isinstance(nested, dict):
        raise bad_request("mm_processor_kwargs must be an object", param="mm_processor_kwargs")
    unknown = sorted(set(nested) - set(MEDIA_OPTIONS))
    if unknown:
        raise bad_request(f"unknown mm_processor_kwargs {unknown}; known: {', '.join(MEDIA_OPTIONS)}", param="mm_processor_kwargs")
    io_kwargs = body.get("media_io_kwargs")
    if io_kwargs is None:
        io_kwargs = {}
    if not isinstance(io_kwargs, dict) or not isinstance(io_kwargs.get("video", {}), dict):
        raise bad_request("media_io_kwargs must be an object like {\"video\": {\"num_frames\": 16}}",
                          param="media_io_kwargs")
    video_io = io_kwargs.get("video") or {}
    unknown = sorted(set(video_io) - {"num_frames", "fps"}) + sorted(set(io_kwargs) - {"video", "image"})
    if unknown:
        raise bad_request(f"unknown media_io_kwargs {unknown}; known: video.num_frames, video.fps",
                          param="media_io_kwargs")
    out = {}
    for source, prefix in ((video_io, "media_io_kwargs.video."), (nested, "mm_processor_kwargs."), (body, "")):
        values = {
            "num_frames": _integer(source, "num_frames", 1, MAX_FRAMES, prefix),
            "fps": _number(source, "fps", 0.0, 240.0, prefix),
            "token_kept_ratio": _number(source, "token_kept_ratio", 0.0, 1.0, prefix),
            "reduction": _choice(source, "reduction", METHODS, prefix),
        }
        for name, value in values.items():
            if value is None:
                continue
            if value == 0 and name != "num_frames":
                raise bad_request(f"{prefix}{name} must be > 0", param=prefix + name)
            if name in out and out[name] != value:
                raise bad_request(f"{name} is given twice with different values", param=name)
            out[name] = value
    return out


def _bool(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false", param=name)
    return value


def _number(body: dict, name: str, low: float, high: float, prefix: str = "") -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise bad_request(f"{prefix}{name} must be a number in [{low:g}, {high:g}], got {value!r}", param=prefix + name)
    return float(value)


def _choice(body: dict, name: str, choices: tuple[str, ...], prefix: str = "") -> str | None:
    value = body.get(name)
    if value is not None and value not in choices:
        raise bad_request(f"{prefix}{name} must be one of {', '.join(choices)}, got {value!r}", param=prefix + name)
    return value


def _integer(body: dict, name: str, low: int | None, high: int | None = None, prefix: str = "") -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise bad_request(f"{prefix}{name} must be an integer {bounds}, got {value!r}", param=prefix + name)
    return value


# ---- responses -------------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(reply) -> dict:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.generated_tokens,
            "total_tokens": reply.prompt_tokens + reply.generated_tokens}


def finish_reason(reply) -> str:
    return "length" if reply.finish_reason == "length" else "stop"  # "cancelled" has no reader left


def visual_tokens(reply, frames: list[int]) -> int:
    """Visual tokens that reached the language model: what each model counted, else blocks x tokens
    per block (a block per frame, or per clip for a clip-sampled visual)."""
    if reply.visual_tokens and all("language_model" in counts for counts in reply.visual_tokens):
        return sum(counts["language_model"] for counts in reply.visual_tokens)
    return sum(n * t for n, t in zip([len(c) for c in reply.clips] or frames, reply.visual_tokens_per_frame))


def aurora_extension(reply, token_kept_ratio: float, extra_timings: dict[str, float]) -> dict:
    """What the answer cost: per visual the frame indices / timestamps and tokens per frame,
    the total visual tokens, the merging ratio used and seconds per stage (fetch and queue too)."""
    frames = [len(indices) for indices in reply.frame_indices]
    return {
        "frame_indices": reply.frame_indices,
        "frame_timestamps": reply.frame_timestamps,
        "num_frames": frames,
        "visual_tokens_per_frame": reply.visual_tokens_per_frame,
        "visual_tokens": visual_tokens(reply, frames),
        "token_kept_ratio": token_kept_ratio,
        "reduction": reply.reduction or None,
        "timings": {**{k: round(v, 6) for k, v in extra_timings.items()}, **reply.timings},
        **({"routing": reply.routing} if getattr(reply, "routing", None) else {}),  # MoE: experts chosen
        **({"clips": reply.clips} if reply.clips else {}),  # per visual read as clips (Apollo): [start, end] s
        **({"audio": reply.audio} if getattr(reply, "audio", None) else {}),  # per visual: how its sound was used
    }


def completion(cid: str, created: int, model: str, reply, extension: dict) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                     "logprobs": None, "finish_reason": finish_reason(reply)}],
        "usage": usage(reply),
        "aurora": extension,
    }


def chunk(cid: str, created: int, model: str, delta: dict | None, finish: str | None = None,
          include_usage: bool = False, **extra) -> dict:
    """One `chat.completion.chunk`; delta None makes the usage-only chunk (empty choices)."""
    out = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    out["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    if include_usage:
        out["usage"] = None  # OpenAI sends null on every chunk but the last when usage is asked for
    out.update(extra)
    return out


def now() -> int:
    return int(time.time())


def model_not_found(name: str) -> APIError:
    return APIError(404, f"the model {name!r} does not exist on this server; see GET /v1/models", param="model",
                    code="model_not_found")
