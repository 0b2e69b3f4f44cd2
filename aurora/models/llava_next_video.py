"""LLaVA-NeXT-Video (`LlavaNextVideoForConditionalGeneration`, model_type "llava_next_video"), run
natively through `aurora.models.llava_native`: a CLIP tower (second-to-last layer, CLS dropped),
for a video its 2x2 average-pool resampler on each frame's grid, then the projector (no newline);
for an image LLaVA-NeXT's anyres tiles (the whole image + the best grid of tiles, unpadded, a
newline per row).
"""

from __future__ import annotations

import torch

from aurora.models.llava_native import Spec, family
from aurora.preset import Preset


def default_preset() -> Preset:
    """8 uniform frames (llava-hf's video example), the checkpoint's chat template (else vicuna)."""
    return Preset.of(family="llava_next_video", num_frames=8, sampling="uniform", token_kept_ratio=1.0,
                     template={"name": "llava_next_video", "layout": "video"}, max_new_tokens=512)


def default_image_processor(config) -> dict:
    """Without a preprocessor_config.json: the processor's defaults at the tower's resolution."""
    side = config.vision_config.image_size
    return {"size": {"shortest_edge": side}, "crop_size": {"height": side, "width": side},
            "image_grid_pinpoints": config.image_grid_pinpoints}


def video_tokens(core, grid: torch.Tensor) -> torch.Tensor:
    """(T, P, C) tower features -> (T, P / stride^2, D): the resampler's pooling, then the projector."""
    return core.multi_modal_projector(core.vision_resampler(grid))


def pack_images(core, tiles: list, sizes: torch.Tensor) -> torch.Tensor:
    features, _ = core.pack_image_features(tiles, sizes, core.config.vision_feature_select_strategy,
                                           image_newline=core.image_newline)
    return features[0]


SPEC = Spec(family="llava_next_video", model_type="llava_next_video",
            model_class="LlavaNextVideoForConditionalGeneration", image_processor="LlavaNextImageProcessorPil",
            default_image_processor=default_image_processor, video_tokens=video_tokens, pack_images=pack_images,
            video_newline=False, single_tile_when_several_images=False, default_preset=default_preset)
FAMILY = family(SPEC)
