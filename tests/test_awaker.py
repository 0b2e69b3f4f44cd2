"""Awaker2.5-VL (Qwen2-VL + a mixture of LoRA experts): against an independent plain-torch reference
written here from the published description, on a tiny random Qwen2-VL whose `pytorch_model.bin`
the test writes under the published key names."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

import aurora
from aurora.cli import main
from aurora.errors import CheckpointError
from aurora.testing.media import make_frames, write_video
from tests.test_qwen2_vl import write_tiny

RANK, EXPERTS = 4, 4
LORA, MOE, GATED = ("q_proj", "k_proj", "v_proj"), ("o_proj", "gate_proj", "up_proj", "down_proj"), ("o_proj", "gate_proj")
PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
          "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = write_tiny(tmp_path_factory.mktemp("qwen2vl_base"), Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                      dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2))
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("media") / "clip.mp4", make_frames(8, 56, 84), fps=8)


def published_keys(base_model, seed=1, zero_b=False) -> tuple[dict, dict]:
    """The whole published state dict (peft 0.6 names over transformers 4.45's Qwen2-VL) and, apart,
    the adapter tensors by (layer, module, kind, name)."""
    state = {}
    for key, value in base_model.state_dict().items():
        if key.startswith("model.language_model."):
            key = "model." + key[len("model.language_model."):]
        elif key.startswith("model.visual."):
            key = key[len("model."):]
        state["base_model.model." + key] = value.clone()
    g = torch.Generator().manual_seed(seed)
    text = base_model.config.text_config
    sizes = {"q_proj": (text.hidden_size, text.hidden_size), "o_proj": (text.hidden_size, text.hidden_size),
             "k_proj": (text.hidden_size, text.hidden_size // text.num_attention_heads * text.num_key_value_heads),
             "gate_proj": (text.hidden_size, text.intermediate_size), "up_proj": (text.hidden_size, text.intermediate_size),
             "down_proj": (text.intermediate_size, text.hidden_size)}
    sizes["v_proj"] = sizes["k_proj"]
    adapter = {}
    for layer in range(text.num_hidden_layers):
        for module in LORA + MOE:
            fan_in, fan_out = sizes[module]
            prefix = f"base_model.model.model.layers.{layer}.{PARENT[module]}.{module}"
            names = ["default"] if module in LORA else [str(e) for e in range(EXPERTS)] + ["g"]
            kind = "lora" if module in LORA else "lora_moe"
            for name in names:
                a = torch.randn(RANK, fan_in, generator=g) * 0.3
                b = torch.zeros(fan_out, RANK) if zero_b else torch.randn(fan_out, RANK, generator=g) * 0.3
                state[f"{prefix}.{kind}_A.{name}.weight"], state[f"{prefix}.{kind}_B.{name}.weight"] = a, b
                adapter[(layer, module, name)] = (a, b)
            if module in GATED:
                state[f"{prefix}.w_gate.weight"] = torch.randn(EXPERTS, fan_in, generator=g)
                state[f"{prefix}.w_gate.bias"] = torch.randn(EXPERTS, generator=g)
                state[f"{prefix}.ln.weight"] = 1 + 0.1 * torch.randn(fan_in, generator=g)
                adapter[(layer, module, "gate")] = (state[f"{prefix}.ln.weight"], state[f"{prefix}.w_gate.weight"],
                                                    state[f"{prefix}.w_gate.bias"])
    return state, adapter


def write_awaker(base, out, **kwargs) -> tuple:
    shutil.copytree(base, out)
    for f in out.glob("*.safetensors"):  # the published directory: a base's config + Awaker's one file
        f.unlink()
    state, adapter = published_keys(Qwen2VLForConditionalGeneration.from_pretrained(base), **kwargs)
    torch.save(state, out / "pytorch_model.bin")
    return out, state, adapter


@pytest.fixture(scope="module")
def awaker(base, tmp_path_factory):
    return write_awaker(base, tmp_path_factory.mktemp("aw") / "awaker")


class Reference:
    """MoE-LoRA from the published description, as forward hooks on a plain transformers Qwen2-VL:
    q/k/v add 2 B A x; o/gate/up/down add p^2 2 B_e A_e x + (1 - p) 2 B_g A_g x with e, p from the
    layer's gate (up/down: gate_proj's) on the mean layer-0 input over [vision start, second im_end)."""

    def __init__(self, base, adapter):
        self.model = Qwen2VLForConditionalGeneration.from_pretrained(base).eval()
        self.adapter, self.choice = adapter, {}
        for layer, block in enumerate(self.model.model.language_model.layers):
            for module in LORA + MOE:
                linear = getattr(getattr(block, PARENT[module]), module)
                linear.register_forward_hook(self.hook(layer, module))

    def gate_vector(self, ids, pixels, grid, scatter_video=True):
        embeds = self.model.get_input_embeddings()(ids[0]).clone()  # (L, D)
        config = self.model.config
        if scatter_video:
            features = self.model.model.get_video_features(pixels, grid).pooler_output[0]
            embeds[ids[0] == config.video_token_id] = features
        row = ids[0].tolist()
        ends = [i for i, t in enumerate(row) if t == self.im_end]
        return embeds[row.index(config.vision_start_token_id):ends[1]].mean(0)

    def route(self, g):
        for layer in range(self.model.config.text_config.num_hidden_layers):
            for module in GATED:
                ln, w, b = self.adapter[(layer, module, "gate")]
                normed = g * torch.rsqrt(g.pow(2).mean() + 1e-6) * ln
                p = torch.softmax((normed @ w.T + b).double(), -1).half()  # float16, as published
                self.choice[(layer, module)] = (int(p.argmax()), p.max())

    def hook(self, layer, module):
        def add(linear, args, out):
            x = args[0]
            if module in LORA:
                a, b = self.adapter[(layer, module, "default")]
                return out + 2 * x @ a.T @ b.T
            expert, p = self.choice[(layer, "gate_proj" if module in ("up_proj", "down_proj") else module)]
            a, b = self.adapter[(layer, module, str(expert))]
            ga, gb = self.adapter[(layer, module, "g")]
            return out + p.float() ** 2 * 2 * x @ a.T @ b.T + (1 - p).float() * 2 * x @ ga.T @ gb.T
        return add


def caption_inputs(model, clip):
    frames = model.load_frames(clip, num_frames=4)
    inputs, _ = model.prepare(model._caption_messages(frames, None))
    return inputs


def test_logits_and_routing_equal_an_independent_reference(base, awaker, clip):
    root, _, adapter = awaker
    model = aurora.load(root)
    assert model.preset.family == "awaker"
    inputs = caption_inputs(model, clip)
    reference = Reference(base, adapter)
    reference.im_end = model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids, pixels, grid = inputs["input_ids"][None], inputs["pixel_values_videos"], inputs["video_grid_thw"]
    with torch.no_grad():
        g = reference.gate_vector(ids, pixels, grid)
        reference.route(g)
        expected = reference.model(input_ids=ids, pixel_values_videos=pixels, video_grid_thw=grid,
                                   mm_token_type_ids=inputs["mm_token_type_ids"][None]).logits
        ours = model.model(**model.collate([inputs])).logits
        report = model.adapter.routing.report(0, model.adapter.short_names(), EXPERTS)
        # the video's features are in the gate vector (Aurora's choice; published inference used pad embeddings)
        torch.testing.assert_close(model.adapter.routing.gate_input[0], g, atol=1e-5, rtol=0)
        assert not torch.allclose(g, reference.gate_vector(ids, pixels, grid, scatter_video=False), atol=1e-3)
        plain = Qwen2VLForConditionalGeneration.from_pretrained(base).eval()(**model.collate([inputs])).logits
    chosen = {(int(name.split(".")[0]), name.split(".")[1]): e for name, e in report["experts"].items()}
    assert chosen == {key: e for key, (e, _) in reference.choice.items()}
    assert not torch.allclose(expected, plain, atol=1e-3)  # the adapter matters here
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_with_every_b_zero_the_model_is_its_base(base, clip, tmp_path):
    root, _, _ = write_awaker(base, tmp_path / "zero", zero_b=True)
    model = aurora.load(root)
    inputs = caption_inputs(model, clip)
    with torch.no_grad():
        ours = model.model(**model.collate([inputs])).logits
        plain = Qwen2VLForConditionalGeneration.from_pretrained(base).eval()(**model.collate([inputs])).logits
    torch.testing.assert_close(ours, plain, atol=1e-5, rtol=0)


def test_the_published_file_loads_strictly(base, awaker, tmp_path, clip, capsys):
    root, state, _ = awaker
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    key = "base_model.model.model.layers.1.mlp.up_proj.lora_moe_B.g.weight"
    torch.save({k: v for k, v in state.items() if k != key}, broken / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="missing key 'base_model.model.model.layers.1.mlp.up_proj.lora_moe_B.g.weight'"):
        aurora.load(broken)
    torch.save({**state, "base_model.model.model.layers.0.mlp.extra.weight": torch.zeros(1)}, broken / "pytorch_model.bin")
    code = main(["caption", str(clip), "--model", str(broken), "--max-new-tokens", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unexpected key 'base_model.model.model.layers.0.mlp.extra.weight'" in err
    torch.save({k: v for k, v in state.items() if ".lora_" not in k and ".w_gate." not in k and ".ln." not in k},
               broken / "pytorch_model.bin")  # a plain Qwen2-VL .bin is the Qwen2-VL family's
    assert aurora.models.detect(broken)[0].name == "qwen2_vl"


def test_routing_is_fixed_for_the_whole_answer_and_reported(awaker, clip, capsys):
    root, _, _ = awaker
    model = aurora.load(root)
    gates = sum(1 for layer in model.adapter.layers.values() if hasattr(layer, "w_gate"))
    before = model.adapter.routing.decisions
    reply = model.caption(clip, num_frames=4, max_new_tokens=5)
    assert reply.generated_tokens > 1
    assert model.adapter.routing.decisions - before == gates  # decided at the prefill only, not per token
    assert sorted(reply.routing["experts"]) == ["0.gate_proj", "0.o_proj", "1.gate_proj", "1.o_proj"]
    assert sum(reply.routing["histogram"]) == gates
    code = main(["caption", str(clip), "--model", str(root), "--json", "--num-frames", "4", "--max-new-tokens", "3"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["routing"]["experts"] == reply.routing["experts"]
    # token reduction: fewer tokens reach the LM, the gate still sees the whole prompt
    reduced = model.caption(clip, num_frames=4, max_new_tokens=3, token_kept_ratio=0.5)
    assert reduced.prompt_tokens < reply.prompt_tokens and reduced.routing == reply.routing
    model.preset.reducer.method = "reuse"  # inherited from Qwen2-VL: the tower skips what repeats
    reused = model.caption(clip, num_frames=4, max_new_tokens=3, token_kept_ratio=0.5)
    counts = reused.visual_tokens[0]
    assert reused.prompt_tokens == reduced.prompt_tokens and reused.generated_tokens > 0 and reused.routing
    assert counts["encoder_computed"] < counts["encoder"] and counts["language_model"] == round(0.5 * counts["encoder"])


def test_a_batch_routes_each_request_by_its_own_prompt(awaker, clip, tmp_path):
    root, _, _ = awaker
    model = aurora.load(root)
    still = tmp_path / "still.png"
    from PIL import Image

    Image.fromarray(make_frames(1, 60, 60, seed=9)[0]).save(still)
    alone = [model.caption(v, num_frames=4, max_new_tokens=2).routing["weights"] for v in (clip, still)]
    batch = model.caption_batch([clip, still], num_frames=4, max_new_tokens=2)
    for reply, single in zip(batch, alone):
        assert reply.routing["weights"] == pytest.approx(single, abs=2e-3)
    assert alone[0] != alone[1]


def test_the_routing_is_served(awaker, clip):
    from fastapi.testclient import TestClient

    from aurora.serve.app import create_app
    from aurora.serve.settings import ServeSettings

    root, _, _ = awaker
    model = aurora.load(root)
    app = create_app(model, ServeSettings(model=str(root), allowed_local_media_path=str(Path(clip).parent)))
    with TestClient(app) as client:
        body = {"model": model.name, "max_tokens": 2, "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": f"file://{clip}"}}, {"type": "text", "text": "What moves?"}]}]}
        answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    assert sum(answer.json()["aurora"]["routing"]["histogram"]) == 4


def test_aurora_layout_and_adapter_export_round_trip(base, awaker, clip, tmp_path):
    from aurora.adapters.moe_lora import load_moe_lora
    from aurora.models.awaker import published_name

    root, state, _ = awaker
    model = aurora.load(root)
    assert main(["convert", str(root), str(tmp_path / "safe"), "--to", "aurora"]) == 0
    assert main(["convert", str(root), str(tmp_path / "adapter"), "--to", "awaker-adapter"]) == 0
    assert not list((tmp_path / "safe").glob("*.bin"))
    again = aurora.load(tmp_path / "safe")
    assert again.preset.family == "awaker"
    inputs = caption_inputs(model, clip)
    with torch.no_grad():
        expected = model.model(**model.collate([inputs])).logits
        torch.testing.assert_close(again.model(**again.collate([inputs])).logits, expected, atol=1e-6, rtol=0)
    from safetensors.torch import load_file

    exported = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert exported and all(torch.equal(v, state[k]) for k, v in exported.items())  # the published names
    plain = Qwen2VLForConditionalGeneration.from_pretrained(base).eval()
    adapter, _ = load_moe_lora(plain, tmp_path / "adapter", rename=published_name)
    with torch.no_grad():
        batch = model.collate([inputs])
        adapter.open(spans=model.spans(batch["input_ids"]))
        torch.testing.assert_close(plain(**batch).logits, expected, atol=1e-5, rtol=0)


def test_a_prompt_without_a_visual_routes_from_the_user_turn():
    from aurora.adapters.moe_lora import prompt_span

    VS, S, E = 1, 2, 3
    ids = [S, 10, 11, 12, E, 13, S, 20, 21, 30, 31, 32, E, 13, S, 40, 41]
    assert prompt_span(ids, VS, S, E) == (8, 12)  # second <|im_start|> + 2 .. second <|im_end|>
    assert prompt_span(ids[:8] + [VS, 5, 5] + ids[8:], VS, S, E) == (8, 15)


@pytest.mark.slow  # two short training runs (~10 s)
def test_training_changes_only_the_adapter_and_gates(awaker, clip, tmp_path):
    from aurora.train import load_config, train

    root, _, _ = awaker
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"video": str(clip), "conversations": [
        {"from": "human", "value": "<video>\nWhat is shown?"}, {"from": "gpt", "value": "A clip."}]}) + "\n")
    before = aurora.load(root).model.state_dict()

    def changed(steps, **settings):
        out = train(load_config(data=str(data), output_dir=str(tmp_path / "-".join(settings)), model=str(root),
                                train_parts=[], lora_rank=1, num_frames=2, batch_size=1, max_steps=steps, lr=5e-2,
                                token_kept_ratio=1.0, warmup_steps=0, **settings), progress=False)
        after = aurora.load(out)
        assert after.preset.family == "awaker"
        state = after.model.state_dict()
        return sorted(k for k in before if not torch.equal(before[k], state[k]))

    keys = changed(2, balance_loss=1.0)
    assert any(".lora_moe_" in k for k in keys) and any(".lora_A." in k or ".lora_B." in k for k in keys)
    assert any(".w_gate." in k for k in keys)
    assert all(".lora_" in k or ".w_gate." in k or ".ln." in k for k in keys)
    frozen = changed(1, freeze_gates=True)
    assert frozen and not any(".w_gate." in k or ".ln." in k for k in frozen)


def test_the_adapter_on_a_plain_causal_lm():
    """MoE-LoRA needs no vision model: on a Qwen2 causal LM it routes from the given span, once per request."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from aurora.adapters.moe_lora import MoELoRAConfig, install_moe_lora

    torch.manual_seed(0)
    lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2)).eval()
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        plain = lm(ids).logits
        adapter = install_moe_lora(lm, MoELoRAConfig(rank=2, alpha=4))
        for _, param in adapter.named_parameters():
            param.normal_(0, 0.5)
        adapter.open(spans=[(1, 6), (0, 9)])
        ours = lm(ids).logits
        assert adapter.routing.gate_input.shape == (2, 32) and adapter.routing.decisions == 4  # 2 layers x 2 gates
        assert not torch.allclose(ours, plain, atol=1e-3)
        lm.generate(ids, max_new_tokens=3, do_sample=False, attention_mask=torch.ones_like(ids))
        assert adapter.routing.decisions == 4  # generate went on with the open request's routing
        adapter.open(spans=[(0, 2), (0, 3)])
        lm(ids)
        assert adapter.routing.decisions == 8


def test_the_load_balancing_loss_is_the_published_one():
    from aurora.adapters.moe_lora import balance_loss, route

    torch.manual_seed(3)
    clean, std = torch.randn(6, 4), 0.1
    torch.manual_seed(4)
    expert, p, stats = route(clean, std, 1.0)
    torch.manual_seed(4)
    noisy = clean + torch.randn(6, 4) * std
    probs = torch.softmax(noisy.double(), -1).half().float()
    assert expert.tolist() == probs.argmax(-1).tolist()
    first, second = probs.topk(2, -1).values.unbind(-1)
    importance = torch.zeros(4).index_add(0, expert, first)  # each expert's summed gate values
    normal = torch.distributions.Normal(0.0, 1.0)
    load = torch.where(noisy > second[:, None], normal.cdf((clean - second[:, None]) / std),
                       normal.cdf((clean - first[:, None]) / std)).sum(0)

    def cv2(x):
        return x.var() / (x.mean() ** 2 + 1e-10)

    torch.testing.assert_close(balance_loss(stats, std), cv2(importance) + cv2(load), atol=1e-3, rtol=1e-3)
