"""Conversation templates as data, and how visual placeholders enter the text.

A template renders a list of messages into one prompt string in which every frame is an
`<image>` placeholder; the model later replaces each placeholder by that frame's visual tokens, in
order, with no separator tokens (AuroraCap). The registry is plain data so a checkpoint's preset can
name its template.
"""

from __future__ import annotations

from dataclasses import dataclass

from aurora.errors import ConfigError

IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class Template:
    name: str
    system: str  # wraps a system message; "" = system messages are not supported by the format
    user: str  # wraps one user turn
    assistant: str  # wraps one finished assistant turn
    generation_prompt: str  # what opens the assistant turn to be generated
    stop: tuple[str, ...] = ()  # text that ends a reply besides the tokenizer's EOS
    default_system: str = ""

    def render(self, turns: list[tuple[str, str]]) -> str:
        """turns: (role, text) in order, last one a user turn -> prompt ending at the reply."""
        if not turns or turns[-1][0] != "user":
            raise ConfigError("a conversation must end with a user message")
        parts = []
        if self.default_system and turns[0][0] != "system" and self.system:
            parts.append(self.system.format(content=self.default_system))
        for role, text in turns:
            if role == "system":
                if not self.system:
                    raise ConfigError(f"the {self.name!r} template takes no system message")
                parts.append(self.system.format(content=text))
            elif role == "user":
                parts.append(self.user.format(content=text))
            elif role == "assistant":
                parts.append(self.assistant.format(content=text))
            else:
                raise ConfigError(f"unknown message role {role!r}: use system, user or assistant")
        return "".join(parts) + self.generation_prompt


TEMPLATES: dict[str, Template] = {
    # AuroraCap (xtuner's vicuna): "USER: {input} ASSISTANT:" and no system text. Later rounds are
    # separated by a newline after the previous answer's EOS, as xtuner builds multi-turn data.
    "vicuna": Template(
        name="vicuna",
        system="{content} ",
        user="USER: {content} ",
        assistant="ASSISTANT: {content}</s>\n",
        generation_prompt="ASSISTANT:",
    ),
    "chatml": Template(
        name="chatml",
        system="<|im_start|>system\n{content}<|im_end|>\n",
        user="<|im_start|>user\n{content}<|im_end|>\n",
        assistant="<|im_start|>assistant\n{content}<|im_end|>\n",
        generation_prompt="<|im_start|>assistant\n",
        stop=("<|im_end|>",),
        default_system="You are a helpful assistant.",
    ),
}


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ConfigError(f"unknown prompt template {name!r}: choose one of {', '.join(TEMPLATES)}") from None


def user_content(frame_counts: list[int], text: str) -> str:
    """A user turn's text: per visual, one placeholder per frame joined by spaces, each visual on
    its own line, then a newline and the text (AuroraCap: "<image> <image>\n{prompt}")."""
    lines = [" ".join([IMAGE_PLACEHOLDER] * count) for count in frame_counts]
    return "\n".join(lines + [text]) if lines else text
