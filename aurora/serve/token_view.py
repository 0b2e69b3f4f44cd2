"""A picture of token merging: each patch of the sampled frames coloured by the token it became.

As in ToMe's visualisation, every patch is coloured by the visual token it ended in
(`VideoLLM.token_groups`, the reducer method in force: ToMe inside the encoder, then merging across
time for "temporal" / "both", or the places "reuse" computed and merged); patches sharing a colour
(and enclosed by the same dark outline) are one visual token, and a token merged across frames has
the same colour in every frame it covers. Frames are shown as the tower sees them (after the model's
resize / crop), side by side.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

GOLDEN = 0.618033988749895  # hue step that keeps neighbouring ids far apart on the colour wheel


@torch.inference_mode()
def merge_sources(model, frames: np.ndarray, token_kept_ratio: float, reduction: str | None = None):
    """(T, H, W, 3) uint8 frames -> (crops (T, S, S, 3) uint8 as the tower sees them,
    groups (T, gh, gw) int: the visual token of each patch, numbered over all frames), or None when
    the model's tokens are not per patch (a pooling connector under "reuse")."""
    pixels = model.transform(frames)  # (T, 3, S, S) normalised
    with model.reducing(reduction):
        groups = model.token_groups(pixels, token_kept_ratio)
    if groups is None:
        return None
    mean = torch.tensor(model.preset.vision.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.preset.vision.image_std).view(1, 3, 1, 1)
    rgb = pixels[:, :3].float().cpu()  # motion channels (temporal_input) follow the colours
    crops = (rgb * std + mean).clamp(0, 1).mul(255).round().byte()  # (T, 3, S, S)
    return crops.permute(0, 2, 3, 1).numpy(), groups.cpu().numpy()


def group_colours(count: int) -> np.ndarray:
    """(count, 3) float RGB in [0, 1], distinct for neighbouring ids."""
    return np.array([colorsys.hsv_to_rgb((i * GOLDEN) % 1.0, 0.75, 0.95) for i in range(count)])


def paint_groups(crop: np.ndarray, source: np.ndarray, alpha: float = 0.55, scale: int = 1,
                 palette: np.ndarray | None = None) -> np.ndarray:
    """One frame: (S, S, 3) uint8 + (gh, gw) token ids -> (S*scale, S*scale, 3) uint8, each patch
    blended with its token's colour and outlined where the neighbouring patch is another token.
    `palette`: (tokens, 3) colours indexed by id, shared by the frames of one picture (default:
    this frame's ids numbered 0.. and coloured on their own)."""
    gh, gw = source.shape
    patch = crop.shape[0] // gh  # square patches
    if palette is None:
        ids = np.unique(source, return_inverse=True)[1].reshape(gh, gw)  # 0..tokens-1 in this frame
        palette = group_colours(int(ids.max()) + 1)
    else:
        ids = source
    colours = palette[ids]  # (gh, gw, 3)
    per_pixel = np.repeat(np.repeat(ids, patch, 0), patch, 1)  # (S, S) token id of each pixel
    fill = np.repeat(np.repeat(colours, patch, 0), patch, 1)  # (S, S, 3)
    image = (1 - alpha) * crop[: gh * patch, : gw * patch] / 255.0 + alpha * fill
    if scale > 1:
        image = np.repeat(np.repeat(image, scale, 0), scale, 1)
        per_pixel = np.repeat(np.repeat(per_pixel, scale, 0), scale, 1)
    edge = np.zeros(per_pixel.shape, dtype=bool)
    edge[1:] |= per_pixel[1:] != per_pixel[:-1]
    edge[:, 1:] |= per_pixel[:, 1:] != per_pixel[:, :-1]
    image[edge] *= 0.25
    return (image * 255).round().astype(np.uint8)


def token_view(model, frames: np.ndarray, token_kept_ratio: float, reduction: str | None = None, columns: int = 4,
               width: int = 192) -> np.ndarray | None:
    """(T, H, W, 3) uint8 frames -> one (rows*h, columns*w, 3) uint8 picture of merged-token groups
    (one colour per visual token across all frames), or None when they are not per patch."""
    sources = merge_sources(model, frames, token_kept_ratio, reduction)
    if sources is None:
        return None
    crops, groups = sources
    scale = max(1, width // crops.shape[1])
    palette = group_colours(int(groups.max()) + 1)
    tiles = [paint_groups(crop, ids, scale=scale, palette=palette) for crop, ids in zip(crops, groups)]
    return montage(tiles, columns)


def montage(tiles: list[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Equal-sized (h, w, 3) tiles in rows of `columns`, separated by white gaps."""
    h, w, _ = tiles[0].shape
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    out = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tile
    return out
