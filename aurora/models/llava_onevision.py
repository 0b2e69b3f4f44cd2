"""LLaVA-OneVision (`LlavaOnevisionForConditionalGeneration`, model_type "llava_onevision"), run
natively through `aurora.models.llava_native`: a SigLIP tower (all its layers, no CLS), the
two-layer projector, then for a video 2x2 bilinear pooling of each frame's grid and one
image_newline token after the whole video; for an image anyres tiles (the whole image + the best
grid of 384 px tiles, unpadded, a newline per row, shrunk to at most 9 tiles' worth: "anyres_max_9").
"""

from __future__ import annotations

import torch

from aurora.models.llava_native import Spec, family
from aurora.preset import Preset


def default_preset() -> Preset:
    """8 uniform frames (llava-hf's video example), the checkpoint's chat template (else ChatML)."""
    return Preset.of(family="llava_onevision", num_frames=8, sampling="uniform", token_kept_ratio=1.0,
                     template={"name": "llava_onevision", "layout": "video"}, max_new_tokens=512)


def default_image_processor(config) -> dict:
    """Without a preprocessor_config.json: the processor's defaults at the tower's resolution."""
    side = config.vision_config.image_size
    return {"size": {"height": side, "width": side}, "image_grid_pinpoints": config.image_grid_pinpoints}


def video_tokens(core, grid: torch.Tensor) -> torch.Tensor:
    """(T, P, C) tower features -> (T, ceil(h/2) * ceil(w/2), D): projector, then bilinear 2x2 pooling."""
    return core.apply_pooling(core.multi_modal_projector(grid))


def pack_images(core, tiles: list, sizes: torch.Tensor) -> torch.Tensor:
    features, _ = core.pack_image_features(tiles, sizes, image_newline=core.image_newline,
                                           vision_aspect_ratio=getattr(core.config, "vision_aspect_ratio", "anyres_max_9"))
    return features[0]


SPEC = Spec(family="llava_onevision", model_type="llava_onevision", model_class="LlavaOnevisionForConditionalGeneration",
            image_processor="LlavaOnevisionImageProcessorPil", default_image_processor=default_image_processor,
            video_tokens=video_tokens, pack_images=pack_images, video_newline=True,
            single_tile_when_several_images=True, default_preset=default_preset)
FAMILY = family(SPEC)
