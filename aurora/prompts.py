"""Conversation templates as data, how visual placeholders enter the text, and how a prompt
becomes token segments — owned once here for inference and training alike.

A template renders a list of messages into one prompt string. A visual enters a user turn as
`<image>` placeholders laid out by the preset's `layout`: one per frame (AuroraCap: "<image>
<image>\n{prompt}"), one per video (PLLaVA), or one per clip inside timed text (Apollo: `clips_text`). The model later replaces each placeholder by one
block of visual tokens, in order, with no separator tokens (`aurora.models.splice`). The registry
is plain data so a checkpoint's preset can name its template.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from aurora.errors import ConfigError

IMAGE_PLACEHOLDER = "<image>"
IGNORE = -100  # label of tokens that carry no loss
# one placeholder per frame (AuroraCap), the same numbered ("1: <image> 2: <image>": where each frame's
# tokens start, however many merging left it), per video (PLLaVA), per timed clip (Apollo)
LAYOUTS = ("frames", "numbered_frames", "video", "clips")
PER_FRAME = ("frames", "numbered_frames")  # layouts with one token block per frame


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
    visual_join: str = "\n"  # between a turn's placeholders and its text
    prefix: str = ""  # once before the first turn

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
        parts = [self.prefix] if self.prefix else []
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

    def pieces(self, turns: list[tuple[str, str]]) -> list[tuple[str, bool]]:
        """A finished conversation as (text, has loss) pieces for training: every assistant turn's
        `answer` (reply + end marker) has loss, all else is context. Joined, the pieces are the
        rendered conversation up to its last answer."""
        pieces: list[tuple[str, bool]] = []
        done = 0  # characters of the rendered history already turned into pieces
        history: list[tuple[str, str]] = []
        for role, text in turns:
            if role == "assistant":
                context = self.render(history)  # ends with the generation prompt
                pieces.append((context[done:], False))
                answer = self.answer.format(content=text)
                pieces.append((answer, True))
                done = len(context) + len(answer)  # the separator opens the next context piece
            history.append((role, text))
        return pieces


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
    # PLLaVA's conv_plain_v1 (tasks/eval/eval_utils.py): roles "USER:" / "ASSISTANT:" with no space
    # after them, separators " " and "</s>", the video placeholder before the text with a space.
    "pllava": Template(
        name="pllava",
        system="{content} ",
        user="USER:{content} ",
        generation_prompt="ASSISTANT:",
        answer="{content}</s>",
        visual_join=" ",
    ),
    # PLLaVA's evaluation templates (same file): roles "USER: " / "ASSISTANT:", separators " " and
    # "</s>", the video token "<image>\n". conv_eval_mvbench / conv_eval_vcg put it in a user message
    # of its own (MM_ALONE: "USER: <image>\n USER: {question} ASSISTANT:"); conv_eval_videoqabench
    # before the question in the same message (MM_INTERLEAF: "USER: <image>\n {question} ASSISTANT:").
    "pllava_eval_alone": Template(
        name="pllava_eval_alone",
        system="{content} ",
        user="USER: {content} ",
        generation_prompt="ASSISTANT:",
        answer="{content}</s>",
        visual_join="\n USER: ",
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
# Video-LLaMA's default_conversation (conversation_video.py, SeparatorStyle.SINGLE with sep "###" and
# an empty system): "###Human: {msg}###Assistant: {answer}###Human: ...###Assistant:".
TEMPLATES["video_llama"] = Template(
    name="video_llama",
    system="{content}",
    user="###Human: {content}",
    generation_prompt="###Assistant:",
    answer=" {content}",
    stop=("###",),
    visual_join=" ",  # Chat.ask joins the visual's message and the question with a space
)
# Video-LLaMA's conv_llava_llama_2 (SeparatorStyle.LLAMA_2): the system inside the first [INST], later
# turns "<s>[INST] {msg} [/INST]", answers " {answer} </s>".
TEMPLATES["video_llama_2"] = Template(
    name="video_llama_2",
    system="[INST] <<SYS>>\n{content}\n<</SYS>>\n\n",
    user="{content} [/INST]",
    generation_prompt="",
    answer=" {content} </s>",
    separator="<s>[INST] ",
    default_system="You are a helpful language and vision assistant. You are able to understand the visual content "
                   "that the user provides, and assist the user with a variety of tasks using natural language.",
    visual_join=" ",
)
TEMPLATES["pllava_eval_interleaf"] = replace(TEMPLATES["pllava_eval_alone"], name="pllava_eval_interleaf",
                                             visual_join="\n ")
# Qwen2-VL's chat template: ChatML with the visual's tokens right before the text
TEMPLATES["qwen2_vl"] = replace(TEMPLATES["chatml"], name="qwen2_vl", visual_join="")
# Fallbacks for LLaVA-style checkpoints without a chat template of their own (theirs is used when
# present), and what training renders: a turn of visuals then text comes out as llava-hf's published
# chat templates write it, so fine-tuning and answering agree. LLaVA-OneVision: ChatML with a space
# after the role ("<|im_start|>user <video>\n{text}<|im_end|>\n"), no default system message;
# LLaVA-NeXT-Video: vicuna ("USER: <video>\n{text} ASSISTANT:").
TEMPLATES["llava_onevision"] = replace(TEMPLATES["chatml"], name="llava_onevision", default_system="",
                                       system="<|im_start|>system \n{content}<|im_end|>\n",
                                       user="<|im_start|>user {content}<|im_end|>\n")
TEMPLATES["llava_next_video"] = replace(TEMPLATES["vicuna"], name="llava_next_video")
# Apollo's "qwen_2" conversation (conv_qwen, SeparatorStyle.CHATML): its system text starts with a
# newline ("<|im_start|>system\n\nYou are ..."), and the timed clips end with "\n\n" before the question.
TEMPLATES["apollo"] = replace(TEMPLATES["chatml"], name="apollo", visual_join="\n\n",
                              default_system="\nYou are a helpful vision-language assistant.")
# SmolVLM2's chat template: "<|im_start|>" once, then "Role: text<end_of_utterance>\n" turns. The checkpoint's
# own (jinja) template renders inference prompts; this copy serves training, where a turn's text is
# "User:" + the visual right after (the jinja template's space after "User:" when a turn starts with
# text or a video is added by the family for videos, not for text-only later turns).
TEMPLATES["smolvlm"] = Template(
    name="smolvlm",
    prefix="<|im_start|>",
    system="System: {content}<end_of_utterance>\n",
    user="User:{content}<end_of_utterance>\n",
    generation_prompt="Assistant:",
    answer=" {content}<end_of_utterance>",
    separator="\n",
    stop=("<end_of_utterance>",),
    visual_join="",
)


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ConfigError(f"unknown prompt template {name!r}: choose one of {', '.join(TEMPLATES)}") from None


@dataclass
class TemplateSettings:
    """The template section of a model's preset."""

    name: str = "vicuna"
    layout: str = "frames"
    default_prompt: str = "Describe the video in detail."

    def __post_init__(self):
        if self.name not in TEMPLATES:
            raise ConfigError(f"invalid preset: template must be one of {tuple(TEMPLATES)}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"invalid preset: layout must be one of {LAYOUTS}")


def user_content(block_counts: list[int | str], text: str, layout: str = "frames", join: str = "\n") -> str:
    """A user turn's text: per visual, its placeholders (one per token block, joined by spaces),
    each visual on its own line, then a newline and the text (AuroraCap: "<image> <image>\n{prompt}").

    `layout` "numbered_frames" puts each frame's number before its placeholder ("1: <image> 2: <image>"),
    so where a frame's tokens start stays plain when merging across time leaves it few or none;
    "video" expects one block per visual (the whole video behind one placeholder). A visual
    given as text instead of a count is already laid out with its placeholders (layout "clips":
    `clips_text`; Video-LLaMA words each visual: "<Video><image></Video> The video contains ...")."""
    if layout == "video" and any(isinstance(count, int) and count != 1 for count in block_counts):
        raise ConfigError(f"layout 'video' takes one token block per visual, got {block_counts}")
    if layout == "clips" and not all(isinstance(count, str) for count in block_counts):
        raise ConfigError("layout 'clips' takes each visual's timed text (clips_text), not a block count")

    def placeholders(count: int) -> str:
        if layout == "numbered_frames" and count > 1:
            return " ".join(f"{i + 1}: {IMAGE_PLACEHOLDER}" for i in range(count))
        return " ".join([IMAGE_PLACEHOLDER] * count)

    lines = [count if isinstance(count, str) else placeholders(count) for count in block_counts]
    return "\n".join(lines) + join + text if lines else text


def clips_text(clips: list[tuple[float, float]], duration: float, clip_duration: float) -> str:
    """A video as timed clips, Apollo's words exactly (ApolloMMLoader): "You are provided the following
    series of {n in words}, {clip_duration} second clips from a {H:MM:SS} [H:MM:SS] video.\n", then
    one "{start:.1f}-{end:.1f} seconds: <image>" per clip (the clip's token block), joined by ",\n".

    The length is Python's `str(timedelta)` as published, so a fractional one keeps its
    microseconds ("0:01:01.033333"); the clip duration prints as its config value does (2 or 2.0)."""
    import datetime

    from num2words import num2words

    head = (f"You are provided the following series of {num2words(len(clips))}, {clip_duration} second clips "
            f"from a {datetime.timedelta(seconds=duration)} [H:MM:SS] video.\n")
    return head + ",\n".join(f"{_tenths(start)}-{_tenths(end)} seconds: {IMAGE_PLACEHOLDER}" for start, end in clips)


def _tenths(seconds: float) -> str:
    """Apollo writes `round(t, 1)` of a numpy float, i.e. numpy's rounding (rint(10 t) / 10, so 0.15
    gives 0.2 where Python's round gives 0.1), printed with one decimal."""
    import numpy as np

    return f"{float(np.round(np.float64(seconds), 1)):.1f}"


def segment(pieces: list[tuple[str, bool]], tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    """(text, has loss) pieces -> token segments split at the placeholders, with labels.

    Segment k is the text before placeholder k (the last one: after all of them). Chunks between
    placeholders are tokenised separately, the first with the tokenizer's special tokens (BOS),
    the rest without, as AuroraCap does. Labels copy the ids where a piece has loss, else IGNORE.
    """
    segments: list[list[int]] = [[]]
    labels: list[list[int]] = [[]]
    first = True
    for text, has_loss in pieces:
        for j, chunk in enumerate(text.split(IMAGE_PLACEHOLDER)):
            if j > 0:  # a visual block sits here: start a new segment
                segments.append([])
                labels.append([])
            ids = tokenizer.encode(chunk, add_special_tokens=first) if (chunk or first) else []
            first = False
            segments[-1].extend(ids)
            labels[-1].extend(ids if has_loss else [IGNORE] * len(ids))
    return segments, labels
