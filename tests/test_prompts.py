"""Conversation templates render the published layouts."""

import pytest

from aurora.errors import ConfigError
from aurora.prompts import get_template, user_content


def test_auroracap_vicuna_single_turn():
    prompt = get_template("vicuna").render([("user", user_content([3], "Describe the video in detail."))])
    assert prompt == "USER: <image> <image> <image>\nDescribe the video in detail. ASSISTANT:"


def test_vicuna_multi_turn_and_answer_span():
    t = get_template("vicuna")
    prompt = t.render([("user", "q1"), ("assistant", "a1"), ("user", "q2")])
    assert prompt == "USER: q1 ASSISTANT: a1</s>\nUSER: q2 ASSISTANT:"
    # a finished turn is the generation prompt followed by the answer text the model must produce
    assert t.render([("user", "q1"), ("assistant", "a1")], add_generation_prompt=False) == (
        t.render([("user", "q1")]) + t.answer.format(content="a1") + t.separator
    )


def test_chatml_has_default_system_and_stop():
    t = get_template("chatml")
    prompt = t.render([("user", user_content([1], "Hi"))])
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<image>\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert t.stop == ("<|im_end|>",)
    custom = t.render([("system", "Be brief."), ("user", "Hi")])
    assert custom.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and "helpful" not in custom


def test_several_visuals_each_on_a_line():
    assert user_content([2, 1], "Compare.") == "<image> <image>\n<image>\nCompare."
    assert user_content([], "Hello") == "Hello"


def test_numbered_frames_say_where_each_frame_starts():
    """However many tokens merging leaves a frame (none, under merging across time), its number
    comes first; an image (one block) is not numbered."""
    assert user_content([3], "Describe.", "numbered_frames") == "1: <image> 2: <image> 3: <image>\nDescribe."
    assert user_content([1, 2], "Compare.", "numbered_frames") == "<image>\n1: <image> 2: <image>\nCompare."


def test_errors():
    with pytest.raises(ConfigError, match="unknown prompt template"):
        get_template("alpaca")
    with pytest.raises(ConfigError, match="end with a user message"):
        get_template("vicuna").render([("user", "q"), ("system", "s")])
    with pytest.raises(ConfigError, match="role"):
        get_template("vicuna").render([("robot", "q"), ("user", "x")])


def test_a_final_assistant_turn_is_continued():
    """MVBench pre-fills the answer: the prompt ends inside the assistant turn."""
    vicuna = get_template("vicuna").render([("user", "Q?"), ("assistant", "Best option:(")])
    assert vicuna == "USER: Q? ASSISTANT: Best option:("
    chatml = get_template("chatml").render([("user", "Q?"), ("assistant", "Best option:(")])
    assert chatml.endswith("<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nBest option:(")
