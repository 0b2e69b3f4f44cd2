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
    """How one conversation format lays out turns.

    An assistant turn is `generation_prompt + answer + separator`; `answer` holds the reply and the
    marker that ends it, so training puts its loss on exactly the text generation must produce.
    """

    name: str
    system: str  # wraps a system message; "" = the format takes none
    user: str  # wraps one user turn
    generation_prompt: str  # opens an assistant turn
    answer: str  # wraps the reply text, with its end marker
    separator: str = ""  # after a finished assistant turn
    stop: tuple[str, ...] = ()  # text that ends a reply besides the tokenizer's EOS
    default_system: str = ""

    def render(self, turns: list[tuple[str, str]], add_generation_prompt: bool = True) -> str:
        """turns: (role, text) in order -> the prompt, opened for the next reply by default.

        A conversation that ends with an assistant turn is continued: that turn is left open, so
        the reply goes on from its text (a pre-filled answer, e.g. MVBench's "Best option:(").
        """
        if add_generation_prompt and (not turns or turns[-1][0] not in ("user", "assistant")):
            raise ConfigError("a conversation must end with a user message (or an assistant message to continue)")
        prefix = None
        if add_generation_prompt and turns[-1][0] == "assistant":
            turns, prefix = turns[:-1], turns[-1][1]
        parts = []
        if self.default_system and self.system and turns and turns[0][0] != "system":
            parts.append(self.system.format(content=self.default_system))
        for role, text in turns:
            if role == "system":
                if not self.system:
                    raise ConfigError(f"the {self.name!r} template takes no system message")
                parts.append(self.system.format(content=text))
            elif role == "user":
                parts.append(self.user.format(content=text))
            elif role == "assistant":
                parts.append(self.generation_prompt + self.answer.format(content=text) + self.separator)
            else:
                raise ConfigError(f"unknown message role {role!r}: use system, user or assistant")
        if not add_generation_prompt:
            return "".join(parts)
        opened = self.generation_prompt
        if prefix is not None:  # what the template puts before an answer (vicuna: a space), then the text
            opened += self.answer.split("{content}")[0] + prefix
        return "".join(parts) + opened


TEMPLATES: dict[str, Template] = {
    # AuroraCap (xtuner's vicuna): "USER: {input} ASSISTANT:" and no system text. Later rounds follow
    # the previous answer's EOS and a newline, as xtuner builds multi-turn data.
    "vicuna": Template(
        name="vicuna",
        system="{content} ",
        user="USER: {content} ",
        generation_prompt="ASSISTANT:",
        answer=" {content}</s>",
        separator="\n",
    ),
    "chatml": Template(
        name="chatml",
        system="<|im_start|>system\n{content}<|im_end|>\n",
        user="<|im_start|>user\n{content}<|im_end|>\n",
        generation_prompt="<|im_start|>assistant\n",
        answer="{content}<|im_end|>",
        separator="\n",
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
