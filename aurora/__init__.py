"""Aurora: run, train, serve and evaluate video-language models with fewer visual tokens.

    import aurora
    model = aurora.load("path/or/hub-id")
    print(model.caption("clip.mp4", num_frames=8, token_kept_ratio=0.2).text)
"""

__version__ = "0.1.0"


def load(path_or_id=None, device="auto", dtype="auto", trust_remote_code=False, revision=None, adapter=None,
         lora_alpha=None):
    """Load a checkpoint (local directory or hub id; None: the bundled default model), with an
    adapter directory applied if given; see `aurora.models.load`."""
    from aurora.models import load as _load

    return _load(path_or_id, device=device, dtype=dtype, trust_remote_code=trust_remote_code, revision=revision,
                 adapter=adapter, lora_alpha=lora_alpha)
