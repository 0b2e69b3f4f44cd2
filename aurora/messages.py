"""Chat messages as every interface passes them: OpenAI-style `{"role", "content"}` with content a
string or a list of parts. Part kinds are a table, so a family with an audio branch takes audio
parts and every other model refuses them in one line."""

from __future__ import annotations

from aurora.errors import ConfigError

PART_KINDS = ("text", "image", "video", "audio")  # a part is {"type": kind, kind: value}


def normalise_messages(messages: list[dict], kinds: tuple[str, ...] = ("text", "image", "video")):
    """OpenAI-style messages -> [(role, [(kind, value), ...])], with only `kinds` allowed."""
    if not isinstance(messages, list) or not messages:
        raise ConfigError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    out = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ConfigError("each message needs 'role' and 'content'")
        content = message["content"]
        if isinstance(content, str):
            out.append((message["role"], [("text", content)]))
            continue
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in kinds or kind not in part:
                hint = "this model has no audio branch" if kind == "audio" else f"use {', '.join(kinds)} parts"
                raise ConfigError(f"unsupported content part {part!r}: {hint}")
            parts.append((kind, part[kind]))
        out.append((message["role"], parts))
    return out
