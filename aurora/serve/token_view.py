"""A picture of token merging: each patch of the sampled frames coloured by the token it became.

As in ToMe's visualisation, the tower runs with `track_source=True` at the layer the model takes
its features from, so `source[t, p]` says which output token patch `p` of frame `t` was merged into;
patches sharing a colour (and enclosed by the same dark outline) are one visual token. Frames are
shown as the tower sees them (after the model's resize / crop), side by side.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

GOLDEN = 0.618033988749895  # hue step that keeps neighbouring ids far apart on the colour wheel


@torch.inference_mode()
def merge_sources(model, frames: np.ndarray, token_kept_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) uint8 frames -> (crops (T, S, S, 3) uint8 as the tower sees them,
    source (T, gh, gw) int: output token of each patch, in the tower's patch grid)."""
    pixels = model.transform(frames)  # (T, 3, S, S) normalised
    out = model.tower(pixels.to(model.device, model.dtype), token_kept_ratio, track_source=True)
    grid_h, grid_w = (side // model.tower.patch_size for side in pixels.shape[-2:])
    source = out.source.reshape(-1, grid_h, grid_w).cpu().numpy()  # (T, gh, gw)
    mean = torch.tensor(model.preset.vision.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.preset.vision.image_std).view(1, 3, 1, 1)
    crops = (pixels.float().cpu() * std + mean).clamp(0, 1).mul(255).round().byte()  # (T, 3, S, S)
    return crops.permute(0, 2, 3, 1).numpy(), source


def group_colours(count: int) -> np.ndarray:
    """(count, 3) float RGB in [0, 1], distinct for neighbouring ids."""
    return np.array([colorsys.hsv_to_rgb((i * GOLDEN) % 1.0, 0.75, 0.95) for i in range(count)])


def paint_groups(crop: np.ndarray, source: np.ndarray, alpha: float = 0.55, scale: int = 1) -> np.ndarray:
    """One frame: (S, S, 3) uint8 + (gh, gw) token ids -> (S*scale, S*scale, 3) uint8, each patch
    blended with its token's colour and outlined where the neighbouring patch is another token."""
    gh, gw = source.shape
    patch = crop.shape[0] // gh  # square patches
    ids = np.unique(source, return_inverse=True)[1].reshape(gh, gw)  # 0..tokens-1 in this frame
    colours = group_colours(int(ids.max()) + 1)[ids]  # (gh, gw, 3)
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


def token_view(model, frames: np.ndarray, token_kept_ratio: float, columns: int = 4, width: int = 192) -> np.ndarray:
    """(T, H, W, 3) uint8 frames -> one (rows*h, columns*w, 3) uint8 picture of merged-token groups."""
    crops, source = merge_sources(model, frames, token_kept_ratio)
    scale = max(1, width // crops.shape[1])
    tiles = [paint_groups(crop, groups, scale=scale) for crop, groups in zip(crops, source)]
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
