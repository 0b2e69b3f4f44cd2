"""What the native-family tests share: asking a served model about a video over HTTP, and a few
LoRA steps through `aurora train` with the weights that changed."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import aurora


def serve_a_video(root, clip) -> tuple[object, int]:
    """The model at `root`, served, asked about `clip` (3 tokens): the 200 response, and the status
    of the same request asking for more tokens than the model's context."""
    from fastapi.testclient import TestClient

    from aurora.serve.app import create_app
    from aurora.serve.settings import ServeSettings

    model = aurora.load(root)
    app = create_app(model, ServeSettings(model=str(root), allowed_local_media_path=str(Path(clip).parent)))
    with TestClient(app) as client:
        body = {"model": model.name, "max_tokens": 3, "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": f"file://{clip}"}}, {"type": "text", "text": "What moves?"}]}]}
        answer = client.post("/v1/chat/completions", json=body)
        too_long = client.post("/v1/chat/completions", json={**body, "max_tokens": 10**6}).status_code
    return answer, too_long


def lora_steps(root, clip, run: Path):
    """3 LoRA steps (rank 4, q/v) on one caption of `clip` -> (before, after, the changed weight names,
    the exported directory); `after` is the exported model (transformers' layout, LoRA merged) loaded back."""
    from aurora.train import load_config, train

    data = run.parent / "train.jsonl"
    data.write_text(json.dumps({"video": str(clip), "conversations": [
        {"from": "human", "value": "<video>\nWhat is shown?"}, {"from": "gpt", "value": "A clip."}]}) + "\n")
    out = train(load_config(data=str(data), output_dir=str(run), model=str(root), train_parts=[], lora_rank=4,
                            token_kept_ratio=1.0, num_frames=2, batch_size=1, max_steps=3, lr=5e-2, warmup_steps=0),
                progress=False)
    before, after = aurora.load(root), aurora.load(out)
    b, a = before.model.state_dict(), after.model.state_dict()
    return before, after, sorted(k for k in b if not torch.equal(b[k], a[k])), out
