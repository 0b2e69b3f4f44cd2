"""The MLP projector (LLaVA / AuroraCap): Linear -> GELU -> Linear, vision width to LM width.

Parameters live in `self.model` (an nn.Sequential) so that state-dict keys are `model.0.*`,
`model.2.*`, as in AuroraCap's xtuner `projector/` checkpoints.
"""

from __future__ import annotations

from torch import nn
from transformers.activations import ACT2FN


class MLPProjector(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, depth: int = 2, act: str = "gelu", bias: bool = True):
        super().__init__()
        if depth < 1:
            raise ValueError(f"projector depth must be >= 1, got {depth}")
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim, bias=bias)]
        for _ in range(depth - 1):
            layers += [ACT2FN[act], nn.Linear(out_dim, out_dim, bias=bias)]
        self.model = nn.Sequential(*layers)
        self.in_dim, self.out_dim, self.depth, self.act, self.bias = in_dim, out_dim, depth, act, bias

    def forward(self, x):  # (..., in_dim) -> (..., out_dim)
        return self.model(x)

    def to_config(self) -> dict:
        """AuroraCap's projector config.json fields."""
        return {
            "model_type": "projector",
            "visual_hidden_size": self.in_dim,
            "llm_hidden_size": self.out_dim,
            "depth": self.depth,
            "hidden_act": self.act,
            "bias": self.bias,
        }

    @classmethod
    def from_config(cls, config: dict) -> "MLPProjector":
        return cls(
            config["visual_hidden_size"],
            config["llm_hidden_size"],
            depth=config.get("depth", 2),
            act=config.get("hidden_act", "gelu"),
            bias=config.get("bias", True),
        )
