"""aurora.adapters: LoRA applied for training, saved and loaded in peft's and PLLaVA's layouts."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from aurora.adapters import adapter_loader
from aurora.adapters.lora import apply_lora, load_lora, save_lora, set_lora_alpha
from aurora.errors import CheckpointError, ConfigError

RANK, ALPHA, TARGETS = 4, 8, ("q_proj", "v_proj")
IDS = torch.tensor([[1, 5, 9, 17, 33, 2, 60, 7]])
PROJECTOR_KEY = "multi_modal_projector.linear_1.weight"
PROJECTOR = {PROJECTOR_KEY: torch.arange(6.0).reshape(2, 3)}


def tiny_llama() -> LlamaForCausalLM:
    """The same random 2-layer Llama every call (fresh bases must be identical)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def trained_lora():
    """A LoRA whose A and B are random and nonzero, as after training."""
    model = apply_lora(tiny_llama(), RANK, ALPHA, TARGETS)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_" in name:
                param.copy_(torch.randn_like(param) * 0.2)
    return model.eval()


def load_kwargs(layout: str, alpha: float = ALPHA) -> dict:
    # PLLaVA's file stores no settings; peft's config does (alpha may still be overridden).
    return {"rank": RANK, "targets": TARGETS, "lora_alpha": alpha} if layout == "pllava" else {}


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("layout", ["peft", "pllava"])
def test_saved_adapter_reloads_onto_a_fresh_base_with_identical_logits(tmp_path, layout):
    model = trained_lora()
    expected = logits(model)
    assert not torch.allclose(expected, logits(tiny_llama()), atol=1e-3)  # the adapter does act
    written = save_lora(model, tmp_path, layout, extra=PROJECTOR)

    loaded, extra = load_lora(tiny_llama(), tmp_path, **load_kwargs(layout))
    torch.testing.assert_close(logits(loaded), expected, atol=1e-6, rtol=0)
    assert list(extra) == [PROJECTOR_KEY] and torch.equal(extra[PROJECTOR_KEY], PROJECTOR[PROJECTOR_KEY])
    assert not any(p.requires_grad for n, p in loaded.named_parameters())

    merged, _ = load_lora(tiny_llama(), tmp_path, merge=True, **load_kwargs(layout))
    assert isinstance(merged, LlamaForCausalLM)  # no peft wrapper left
    torch.testing.assert_close(logits(merged), expected, atol=1e-5, rtol=0)

    # safetensors only, under the layout's own names
    assert sorted(os.listdir(tmp_path)) == (
        ["adapter_config.json", "adapter_model.safetensors"] if layout == "peft" else ["model.safetensors"]
    )
    keys = set(load_file(written))
    if layout == "pllava":
        assert "language_model.base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight" in keys
    else:
        assert "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight" in keys
    assert len(keys) == 2 * 2 * 2 + 1  # layers x targets x (A, B) + the projector


def test_a_zero_b_adapter_equals_the_base(tmp_path):
    model = apply_lora(tiny_llama(), RANK, ALPHA, TARGETS)  # fresh: B = 0
    assert [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(".lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    torch.testing.assert_close(logits(model), logits(tiny_llama()), atol=0, rtol=0)
    save_lora(model, tmp_path)
    loaded, extra = load_lora(tiny_llama(), tmp_path)
    assert extra == {}
    torch.testing.assert_close(logits(loaded), logits(tiny_llama()), atol=0, rtol=0)


def manual_merge(model, alpha: float) -> LlamaForCausalLM:
    """Independent reference: W + (alpha / r) * B @ A in plain torch, on a fresh base."""
    lora = {n: p.detach() for n, p in model.named_parameters() if ".lora_" in n}
    base = tiny_llama()
    state = base.state_dict()
    for layer in range(2):
        for target in TARGETS:
            stem = f"base_model.model.model.layers.{layer}.self_attn.{target}"
            a, b = lora[f"{stem}.lora_A.default.weight"], lora[f"{stem}.lora_B.default.weight"]  # (r, in), (out, r)
            state[f"model.layers.{layer}.self_attn.{target}.weight"] += (alpha / RANK) * (b @ a)
    base.load_state_dict(state)
    return base


@pytest.mark.parametrize("layout", ["peft", "pllava"])
def test_an_alpha_override_scales_the_lora_term_as_alpha_over_r(tmp_path, layout):
    model = trained_lora()
    torch.testing.assert_close(logits(model), logits(manual_merge(model, ALPHA)), atol=1e-5, rtol=0)
    save_lora(model, tmp_path, layout)
    kwargs = {**load_kwargs(layout), "lora_alpha": 1}  # PLLaVA's case: trained 32, evaluated 4
    loaded, _ = load_lora(tiny_llama(), tmp_path, **kwargs)
    reference = logits(manual_merge(model, 1))
    torch.testing.assert_close(logits(loaded), reference, atol=1e-5, rtol=0)
    assert not torch.allclose(reference, logits(model), atol=1e-3)

    set_lora_alpha(loaded, ALPHA)  # unmerged, so it can change back
    torch.testing.assert_close(logits(loaded), logits(model), atol=1e-6, rtol=0)


def test_a_missing_key_is_one_line_naming_it(tmp_path):
    path = save_lora(trained_lora(), tmp_path, "pllava")
    tensors = load_file(path)
    gone = "language_model.base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight"
    del tensors[gone]
    save_file(tensors, path)
    with pytest.raises(CheckpointError) as error:
        load_lora(tiny_llama(), tmp_path, **load_kwargs("pllava"))
    assert gone in one_line(error)


@pytest.mark.parametrize("layout", ["peft", "pllava"])
def test_an_unexpected_key_is_one_line_naming_it(tmp_path, layout):
    path = save_lora(trained_lora(), tmp_path, layout)
    tensors = load_file(path)
    extra_key = (
        "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight" if layout == "peft"
        else "language_model.base_model.model.model.layers.0.self_attn.k_proj.lora_A.default.weight"
    )
    tensors[extra_key] = torch.zeros(RANK, 32)
    save_file(tensors, path)
    with pytest.raises(CheckpointError) as error:
        load_lora(tiny_llama(), tmp_path, **load_kwargs(layout))
    assert extra_key in one_line(error)


def test_a_full_lm_weight_in_a_pllava_file_is_not_taken_for_an_extra(tmp_path):
    path = save_lora(trained_lora(), tmp_path, "pllava")
    tensors = {**load_file(path), "language_model.model.norm.weight": torch.ones(32)}
    save_file(tensors, path)
    with pytest.raises(CheckpointError) as error:
        load_lora(tiny_llama(), tmp_path, **load_kwargs("pllava"))
    assert "language_model.model.norm.weight" in one_line(error)


def test_a_rank_mismatch_names_the_key_and_its_shapes(tmp_path):
    save_lora(trained_lora(), tmp_path, "pllava")
    with pytest.raises(CheckpointError) as error:
        load_lora(tiny_llama(), tmp_path, rank=8, targets=TARGETS, lora_alpha=ALPHA)
    assert "lora_" in one_line(error) and "(4, 32)" in one_line(error)


def test_pickles_are_never_read_and_a_pllava_file_needs_its_settings(tmp_path):
    torch.save({"x": torch.zeros(1)}, tmp_path / "adapter_model.bin")
    with pytest.raises(CheckpointError) as error:
        load_lora(tiny_llama(), tmp_path)
    assert "pickle" in one_line(error)

    save_lora(trained_lora(), tmp_path / "pllava", "pllava")
    with pytest.raises(ConfigError) as error:
        load_lora(tiny_llama(), tmp_path / "pllava", lora_alpha=4)
    assert "rank" in one_line(error)


def test_bad_options_are_one_line_config_errors():
    for kwargs in ({"rank": 0}, {"alpha": -1}, {"targets": "q_proj"}, {"targets": ("nothing_here",)}):
        args = {"rank": RANK, "alpha": ALPHA, "targets": TARGETS, **kwargs}
        with pytest.raises(ConfigError) as error:
            apply_lora(tiny_llama(), **args)
        one_line(error)


def test_the_registry_names_the_lora_loader():
    assert adapter_loader("lora") is load_lora
    with pytest.raises(ConfigError):
        adapter_loader("mixture-of-nothing")
