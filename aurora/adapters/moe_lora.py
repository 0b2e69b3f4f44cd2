"""Mixture of LoRA experts (MoE-LoRA) on a causal LM, as Awaker2.5-VL (MetabrainAGI/Awaker) uses it.

Two kinds of layer replace the LM's `nn.Linear`s, found by name:

- `LoRALinear` on the attention's q/k/v projections: y = W x + b + (alpha / r) B A x (plain LoRA,
  adapter "default").
- `MoELoRALinear` on o_proj, gate_proj, up_proj, down_proj: four LoRA experts "0".."3" and a global
  expert "g". One expert is chosen per row of the batch (top-1) and mixed with the global one:

      y = W x + b + p^2 * s * B_e A_e x + (1 - p) * s * B_g A_g x,     s = alpha / r

  p is the chosen expert's softmax probability. The square is the published code's, not a typo:
  its dispatcher already weights the expert by p when it combines, and the layer then mixes that
  with the global expert by p again (Awaker's `SparseDispatcher.combine` + `y_e * w + y_g * (1 - w)`).
  The softmax is taken in float16 as published, so p carries float16 rounding.

Routing is per request, not per token: o_proj and gate_proj each own a gate, `w_gate(ln(g))`
(RMSNorm, then Linear(in, 4) with a bias), on one vector per row, g = the mean of the layer-0 input
embeddings (visual features scattered in) over the prompt span [start, end). up_proj and down_proj
reuse gate_proj's choice. `Routing` holds that state explicitly: `open()` starts a request (with its
spans, or with the gate vector itself), the first forward after it (the prefill) fixes the gate
vector, each gate decides once, and every later forward (each generated token) reuses the
decisions, so the routing is fixed for the whole answer. (The published inference code recomputes
the gate at every decoding step, without the image features after the first one; it computes it
with them at prefill, which is what Aurora keeps.) Training adds N(0, noise_std) to the gate logits
and, optionally, the published load-balancing loss: coefficient x (cv^2(importance) + cv^2(load)).

Parameter names are the published ones (`lora_A.default`, `lora_moe_A.0` .. `lora_moe_A.g`,
`w_gate`, `ln`; the base weight stays `weight` / `bias`), so a published key maps onto Aurora's by
its prefix alone. Written by hand because peft has no mixture of LoRA experts; the plain LoRA half
is hand-written too so that one module owns the whole adapter and its names (no peft wrapper).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from aurora.errors import CheckpointError, ConfigError

GLOBAL = "g"  # the global expert's name, as published


@dataclass(frozen=True)
class MoELoRAConfig:
    """Awaker2.5-VL's adapter by default: r 256, alpha 512 (scaling 2), 4 experts + a global one."""

    rank: int = 256
    alpha: float = 512.0
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")
    expert_targets: tuple[str, ...] = ("o_proj", "gate_proj", "up_proj", "down_proj")
    # a layer named here takes its routing from the sibling named by the value (same parent module)
    followers: dict[str, str] = field(default_factory=lambda: {"up_proj": "gate_proj", "down_proj": "gate_proj"})
    num_experts: int = 4
    noise_std: float = 0.1  # on the gate logits, in training only
    temperature: float = 1.0
    dropout: float = 0.0  # on the LoRA input, in training only (published: 0.05)

    def __post_init__(self):
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        object.__setattr__(self, "expert_targets", tuple(self.expert_targets))
        checks = [
            (isinstance(self.rank, numbers.Integral) and self.rank >= 1, f"rank must be an integer >= 1, got {self.rank!r}"),
            (isinstance(self.alpha, numbers.Real) and math.isfinite(self.alpha) and self.alpha > 0,
             f"alpha must be a finite number > 0, got {self.alpha!r}"),
            (isinstance(self.num_experts, numbers.Integral) and self.num_experts >= 2,
             f"num_experts must be an integer >= 2, got {self.num_experts!r}"),
            (self.noise_std >= 0 and self.temperature > 0, "noise_std must be >= 0 and temperature > 0"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout!r}"),
            (set(self.followers) <= set(self.expert_targets) and set(self.followers.values()) <= set(self.expert_targets)
             and not set(self.followers) & set(self.followers.values()),
             "followers must map expert targets to expert targets that route themselves"),
            (not set(self.lora_targets) & set(self.expert_targets), "a module is either a LoRA or an expert target"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid MoE-LoRA config: {message}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    @property
    def experts(self) -> tuple[str, ...]:
        return tuple(str(i) for i in range(self.num_experts)) + (GLOBAL,)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["lora_targets"], data["expert_targets"] = list(self.lora_targets), list(self.expert_targets)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "MoELoRAConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"unknown MoE-LoRA settings {unknown} in the checkpoint's config")
        return cls(**data)


# ---- routing: pure functions -----------------------------------------------------------------------

def prompt_span(ids: list[int], vision_start: int, im_start: int, im_end: int) -> tuple[int, int]:
    """Awaker's gate span [start, end) in one row of token ids: from the first `<|vision_start|>`
    (without a visual: the second `<|im_start|>` + 2, past "user\\n") to the second `<|im_end|>`
    (the end of the first user turn after the system prompt)."""
    starts = [i for i, t in enumerate(ids) if t == im_start]
    ends = [i for i, t in enumerate(ids) if t == im_end]
    if len(ends) < 2 or (vision_start not in ids and len(starts) < 2):
        raise ConfigError("MoE-LoRA routing needs a ChatML prompt with a system turn and a user turn "
                          "(<|im_start|> / <|im_end|> twice); use the model's own template")
    start = ids.index(vision_start) if vision_start in ids else starts[1] + 2
    if not start < ends[1]:
        raise ConfigError("MoE-LoRA routing found an empty prompt span; put the question in the first user turn")
    return start, ends[1]


def gate_vectors(embeds: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
    """(B, L, D) layer-0 inputs and per-row spans -> (B, D) span means (no gradient: the published
    gate input is detached)."""
    return torch.stack([embeds[b, start:end].mean(0) for b, (start, end) in enumerate(spans)]).detach()


def route(logits: torch.Tensor, noise_std: float, temperature: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(B, E) clean gate logits -> chosen expert (B,), its float16 probability p (B,), and what the
    load-balancing loss needs. Noise (std `noise_std`) only when it is > 0, i.e. in training."""
    noisy = logits + torch.randn_like(logits) * noise_std if noise_std > 0 else logits
    probs = F.softmax(noisy / temperature, dim=-1, dtype=torch.float16)  # float16 as published
    top, index = probs.topk(2, dim=-1)  # the second value is the "if in" threshold of the load estimate
    return index[:, 0], top[:, 0], {"clean": logits, "noisy": noisy, "top": top, "index": index[:, :1], "probs": probs}


def balance_loss(stats: dict, noise_std: float) -> torch.Tensor:
    """The published load-balancing loss of one gate (top-1): cv^2 of the importance (summed gate
    values per expert) + cv^2 of the load (each row's probability, under the noise, of its expert
    being chosen). As published, the thresholds are softmax probabilities compared with raw logits."""
    clean, noisy, top = stats["clean"], stats["noisy"], stats["top"]
    gates = torch.zeros_like(stats["probs"]).scatter(1, stats["index"], top[:, :1])  # (B, E): p at the chosen
    importance = gates.float().sum(0)
    normal = torch.distributions.Normal(0.0, 1.0)
    threshold_in, threshold_out = top[:, 1:2].to(clean.dtype), top[:, 0:1].to(clean.dtype)
    is_in = noisy > threshold_in
    load = torch.where(is_in, normal.cdf((clean - threshold_in) / noise_std),
                       normal.cdf((clean - threshold_out) / noise_std)).sum(0)
    return cv_squared(importance) + cv_squared(load)


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation (unbiased variance / mean^2, with a small epsilon)."""
    x = x.float()
    return x.var() / (x.mean() ** 2 + 1e-10)


class Routing:
    """Which expert each gate chose for the request in flight (explicit state, shared by the layers).

    `open(spans=...)` or `open(gate_input=...)` starts a request; the first forward fixes the gate
    vector (from the layer-0 input over the spans); each gate decides once; later forwards of the
    same request (generated tokens) reuse the decisions. In training, `balance` > 0 collects the
    load-balancing loss of each gate's decision in `losses`."""

    def __init__(self):
        self.spans: list[tuple[int, int]] | None = None
        self.gate_input: torch.Tensor | None = None  # (B, D)
        self.choices: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # gate name -> expert (B,), p (B,)
        self.losses: list[torch.Tensor] = []
        self.balance = 0.0  # load-balancing coefficient (training)
        self.decisions = 0  # gate decisions made since the adapter was installed (tests count them)

    def open(self, spans: list[tuple[int, int]] | None = None, gate_input: torch.Tensor | None = None) -> None:
        if (spans is None) == (gate_input is None):
            raise ConfigError("open a MoE-LoRA request with either its prompt spans or its gate vectors")
        self.spans, self.gate_input = spans, None if gate_input is None else gate_input.detach()
        self.choices, self.losses = {}, []

    def observe(self, embeds: torch.Tensor) -> None:
        """The layer-0 input of a forward: fixes the gate vector at the request's first forward."""
        if self.gate_input is not None:
            return
        if self.spans is None:
            raise ConfigError("MoE-LoRA routing has no request: call open(spans=...) before the forward")
        if len(self.spans) != embeds.shape[0]:
            raise ConfigError(f"MoE-LoRA routing got {len(self.spans)} spans for a batch of {embeds.shape[0]}")
        self.gate_input = gate_vectors(embeds, self.spans)

    def choice(self, name: str, layer: "MoELoRALinear") -> tuple[torch.Tensor, torch.Tensor]:
        """(expert (B,), p (B,)) of gate `name`, decided by `layer`'s gate at its first call this request."""
        if name not in self.choices:
            if self.gate_input is None:
                raise ConfigError("MoE-LoRA routing has no gate vector: the layer-0 hook did not run")
            x = self.gate_input.to(layer.w_gate.weight.dtype)
            logits = layer.w_gate(layer.ln(x))  # (B, E)
            noise = layer.noise_std if layer.training else 0.0
            expert, p, stats = route(logits, noise, layer.temperature)
            if layer.training and self.balance > 0 and noise > 0 and layer.w_gate.weight.requires_grad:
                self.losses.append(self.balance * balance_loss(stats, noise))
            self.choices[name] = (expert, p)
            self.decisions += 1
        return self.choices[name]

    def report(self, row: int, names: dict[str, str], num_experts: int) -> dict:
        """One request's routing: the expert each gate chose and a histogram over experts."""
        layers = {names[name]: int(expert[row]) for name, (expert, _) in self.choices.items()}
        histogram = [0] * num_experts
        for e in layers.values():
            histogram[e] += 1
        weights = {names[name]: round(float(p[row]), 4) for name, (_, p) in self.choices.items()}
        return {"experts": layers, "weights": weights, "histogram": histogram}


# ---- layers ----------------------------------------------------------------------------------------

def _lora_pair(in_features: int, out_features: int, rank: int, dtype, device) -> tuple[nn.Linear, nn.Linear]:
    a = nn.Linear(in_features, rank, bias=False, dtype=dtype, device=device)
    b = nn.Linear(rank, out_features, bias=False, dtype=dtype, device=device)
    nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))  # B = 0: a fresh adapter changes nothing
    nn.init.zeros_(b.weight)
    return a, b


class LoRALinear(nn.Module):
    """A linear layer with plain LoRA ("default"): W x + b + (alpha / r) B A x."""

    def __init__(self, base: nn.Linear, rank: int, scaling: float, dropout: float = 0.0):
        super().__init__()
        self.weight, self.bias = base.weight, base.bias  # the frozen base, under its own names
        a, b = _lora_pair(base.in_features, base.out_features, rank, base.weight.dtype, base.weight.device)
        self.lora_A, self.lora_B = nn.ModuleDict({"default": a}), nn.ModuleDict({"default": b})
        self.scaling, self.dropout = scaling, nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = self.lora_B["default"](self.lora_A["default"](self.dropout(x))) * self.scaling
        return F.linear(x, self.weight, self.bias) + delta


class MoELoRALinear(nn.Module):
    """A linear layer with LoRA experts chosen per row by a gate (its own, or a sibling's)."""

    def __init__(self, base: nn.Linear, config: MoELoRAConfig, routing: Routing, gate_name: str, owns_gate: bool):
        super().__init__()
        self.weight, self.bias = base.weight, base.bias
        dtype, device = base.weight.dtype, base.weight.device
        pairs = {name: _lora_pair(base.in_features, base.out_features, config.rank, dtype, device)
                 for name in config.experts}
        self.lora_moe_A = nn.ModuleDict({name: a for name, (a, _) in pairs.items()})
        self.lora_moe_B = nn.ModuleDict({name: b for name, (_, b) in pairs.items()})
        if owns_gate:  # RMSNorm -> Linear(in, experts), on the request's gate vector
            self.ln = nn.RMSNorm(base.in_features, eps=1e-6, dtype=dtype, device=device)
            self.w_gate = nn.Linear(base.in_features, config.num_experts, dtype=dtype, device=device)
        self.scaling, self.dropout = config.scaling, nn.Dropout(config.dropout)
        self.noise_std, self.temperature = config.noise_std, config.temperature
        self.gate_name = gate_name
        self.__dict__["routing"] = routing  # shared state, not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, in)
        expert, p = self.routing.choice(self.gate_name, self._gate_owner())
        out = F.linear(x, self.weight, self.bias)
        h = self.dropout(x)
        chosen = torch.zeros_like(out)
        for e in expert.unique().tolist():
            rows = expert == e
            chosen[rows] = self.lora_moe_B[str(e)](self.lora_moe_A[str(e)](h[rows])) * self.scaling
        shared = self.lora_moe_B[GLOBAL](self.lora_moe_A[GLOBAL](h)) * self.scaling
        w = p.view(-1, 1, 1)  # float16, as published; (1 - w) is taken in float16 too
        return out + chosen * w.float() * w.float() + shared * (1 - w).float()

    def _gate_owner(self) -> "MoELoRALinear":
        return self if hasattr(self, "w_gate") else self.__dict__["gate_owner"]


# ---- installing on a model -------------------------------------------------------------------------

class MoELoRA:
    """The adapter installed on one model: its layers by name, the shared `Routing`, the layer-0 hook.
    Not an nn.Module: its parameters live inside the model's own module tree."""

    def __init__(self, model: nn.Module, config: MoELoRAConfig, layers: dict[str, nn.Module], routing: Routing, hook):
        self.model, self.config, self.layers, self.routing, self._hook = model, config, layers, routing, hook

    def open(self, spans=None, gate_input=None) -> None:
        self.routing.open(spans=spans, gate_input=gate_input)

    def named_parameters(self):
        """The adapter's own parameters (not the base weights), by their names in the model."""
        for prefix, layer in self.layers.items():
            for name, param in layer.named_parameters():
                if name not in ("weight", "bias"):
                    yield f"{prefix}.{name}", param

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: param.detach() for name, param in self.named_parameters()}

    def set_trainable(self, freeze_gates: bool = False) -> list[nn.Parameter]:
        """Freeze the whole model, then let the LoRA (and, unless `freeze_gates`, the gates) train."""
        self.model.requires_grad_(False)
        params = []
        for name, param in self.named_parameters():
            train = not (freeze_gates and (".w_gate." in name or ".ln." in name))
            param.requires_grad_(train)
            if train:
                params.append(param)
        return params

    def loss(self) -> torch.Tensor | None:
        """The load-balancing loss of the last forward (None when there is none)."""
        return torch.stack(self.routing.losses).sum() if self.routing.losses else None

    def short_names(self) -> dict[str, str]:
        """Gate name -> "N.o_proj" (layer number and module) for reports."""
        out = {}
        for name in self.layers:
            found = re.search(r"layers\.(\d+)\..*?([^.]+)$", name)
            out[name] = f"{found.group(1)}.{found.group(2)}" if found else name
        return out


def install_moe_lora(model: nn.Module, config: MoELoRAConfig) -> MoELoRA:
    """Replace the targeted linears of `model` (any causal LM, or a model holding one) in place
    and hook its first decoder layer; returns the installed adapter."""
    routing, layers, targets = Routing(), {}, config.lora_targets + config.expert_targets
    found = [(name, module) for name, module in model.named_modules()
             if name.rsplit(".", 1)[-1] in targets and isinstance(module, nn.Linear)]
    if not found:
        raise ConfigError(f"no linear layer named {', '.join(targets)} to put MoE-LoRA on")
    if any(isinstance(m, (LoRALinear, MoELoRALinear)) for m in model.modules()):
        raise ConfigError("the model already carries MoE-LoRA; pass the base model")
    by_name = dict(found)
    for name, base in found:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if leaf in config.lora_targets:
            layer = LoRALinear(base, config.rank, config.scaling, config.dropout)
        else:
            leader = config.followers.get(leaf)
            gate_name = f"{parent_name}.{leader}" if leader else name
            if leader and gate_name not in by_name:
                raise ConfigError(f"{name} takes its routing from {gate_name}, which the model lacks")
            layer = MoELoRALinear(base, config, routing, gate_name, owns_gate=leader is None)
        layer.train(base.training)  # a model in eval mode stays so (no routing noise)
        setattr(parent, leaf, layer)
        layers[name] = layer
    for layer in layers.values():  # followers find the layer whose gate they use
        if isinstance(layer, MoELoRALinear) and not hasattr(layer, "w_gate"):
            layer.__dict__["gate_owner"] = layers[layer.gate_name]
    first = _first_decoder_layer(model, list(layers))

    def observe(module, args, kwargs):
        routing.observe(args[0] if args else kwargs["hidden_states"])

    hook = first.register_forward_pre_hook(observe, with_kwargs=True)
    return MoELoRA(model, config, layers, routing, hook)


def _first_decoder_layer(model: nn.Module, adapted: list[str]) -> nn.Module:
    """The first block of the ModuleList that holds the adapted layers (its input is the layer-0 input)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and any(a.startswith(name + ".") for a in adapted):
            return module[0]
    raise ConfigError("cannot find the decoder layers that hold the MoE-LoRA targets")


# ---- published checkpoints -------------------------------------------------------------------------

def config_from_keys(keys) -> MoELoRAConfig:
    """The published adapter's settings from its keys and shapes: rank from a LoRA A matrix, experts
    from the expert names; alpha is 2 x rank (the published scaling)."""
    keys = dict(keys)
    rank = next((v.shape[0] for k, v in keys.items() if ".lora_A.default.weight" in k or ".lora_moe_A.0.weight" in k), None)
    experts = {m.group(1) for k in keys if (m := re.search(r"\.lora_moe_A\.(\d+)\.weight$", k))}
    if rank is None or not experts:
        raise CheckpointError("the weights carry no MoE-LoRA keys (lora_A.default / lora_moe_A.N)")
    return MoELoRAConfig(rank=int(rank), alpha=2.0 * int(rank), num_experts=len(experts))


def load_moe_lora(lm: nn.Module, directory, rename=None, **_) -> tuple[MoELoRA, dict]:
    """The adapter-only layout (`aurora convert --to awaker-adapter`): `moe_lora_config.json` and
    `adapter_model.safetensors` with the adapter's tensors, onto a base `lm`; strict. `rename` maps
    an Aurora parameter name to the file's (the published names; default: the same)."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    directory = Path(directory)
    path = directory / "adapter_model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"no MoE-LoRA adapter in {directory}: adapter_model.safetensors is missing")
    settings = json.loads((directory / "moe_lora_config.json").read_text())
    adapter = install_moe_lora(lm, MoELoRAConfig.from_dict(settings))
    tensors = load_file(path)
    own = {(rename or str)(name): param for name, param in adapter.state_dict().items()}
    unexpected = sorted(set(tensors) - set(own))
    missing = sorted(set(own) - set(tensors))
    if unexpected or missing:
        which = f"unexpected key {unexpected[0]!r}" if unexpected else f"missing key {missing[0]!r}"
        raise CheckpointError(f"{path}: {which}; the adapter does not fit this model")
    with torch.no_grad():
        for name, param in adapter.named_parameters():
            param.copy_(tensors[(rename or str)(name)])
    return adapter, {}
