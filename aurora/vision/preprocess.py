"""Frame preprocessing for vision towers, vectorised over all frames in torch.

Matches CLIP's image processor (resize the shortest edge with bicubic filtering, centre crop,
rescale to [0, 1], normalise) closely enough for the towers' outputs to agree, without PIL round
trips per frame. The parameters travel with each checkpoint's preset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("shortest_edge_crop", "squash")
TEMPORAL_INPUTS = ("none", "difference", "motion")
TEMPORAL_CHANNELS = {"none": 3, "difference": 6, "motion": 8}
MAX_CROP_ASPECT = 4  # longer/shorter side kept before a shortest-edge resize (see below)


@dataclass(frozen=True)
class FrameTransform:
    size: int = 378
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    resize: str = "shortest_edge_crop"  # or "squash": straight to size x size (SigLIP-style)
    temporal: str = "none"  # "difference": add each frame's change since the previous frame;
    # "motion": that change plus the normal flow (which way it moves, in pixels, x then y)

    def __post_init__(self):
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.temporal not in TEMPORAL_INPUTS:
            raise ValueError(f"temporal must be one of {TEMPORAL_INPUTS}, got {self.temporal!r}")

    @property
    def channels(self) -> int:
        return TEMPORAL_CHANNELS[self.temporal]

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB -> (T, 3, size, size) float32, normalised."""
        if isinstance(frames, np.ndarray) and not frames.flags.writeable:
            frames = frames.copy()  # torch refuses to wrap read-only arrays (e.g. from PIL)
        x = torch.as_tensor(frames).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8
        if self.resize == "shortest_edge_crop":
            x = _centre_within_aspect(x, MAX_CROP_ASPECT)
        x = x.float()
        height, width = x.shape[-2:]
        if self.resize == "squash":
            target = (self.size, self.size)
        else:
            # CLIP's rule: the short side becomes `size`, the long side int(size * long / short).
            short, long = min(height, width), max(height, width)
            long_new = int(self.size * long / short)
            target = (self.size, long_new) if height <= width else (long_new, self.size)
        if (height, width) != target:
            # antialiased bicubic is PIL's filter; round and clip like the uint8 image PIL returns
            x = F.interpolate(x, size=target, mode="bicubic", align_corners=False, antialias=True)
            x = x.round_().clamp_(0, 255)
        if self.resize == "shortest_edge_crop":
            top = (x.shape[-2] - self.size) // 2
            left = (x.shape[-1] - self.size) // 2
            x = x[..., top : top + self.size, left : left + self.size]
        mean = torch.tensor(self.mean).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.std).view(1, 3, 1, 1) * 255
        x = (x - mean) / std
        if self.temporal == "difference":
            x = with_frame_differences(x)
        elif self.temporal == "motion":
            x = torch.cat([with_frame_differences(x), normal_flow(x)], dim=1)
        return x.contiguous()


def _centre_within_aspect(x: torch.Tensor, aspect: int) -> torch.Tensor:
    """(T, C, H, W) -> the centre (T, C, H', W') with longer side <= aspect * shorter side.

    A shortest-edge crop only ever uses the centre square, but resizing a 6000x1 strip first
    would upscale it to 378 x 2.3M floats; cutting the far ends off before resizing keeps the
    same centre (up to the filter's reach, far inside the margin kept) at bounded memory.
    Frames within the aspect are returned unchanged, so ordinary inputs match CLIP exactly.
    """
    height, width = x.shape[-2:]
    short = min(height, width)
    keep = aspect * short
    if height > keep:
        top = (height - keep) // 2
        x = x[..., top : top + keep, :]
    elif width > keep:
        left = (width - keep) // 2
        x = x[..., left : left + keep]
    return x


def with_frame_differences(pixels: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) -> (T, 6, H, W): each frame followed by its change since the previous frame
    (zeros for the first). A per-frame tower cannot see motion otherwise; with the difference
    channels, camera and object motion become visible to every patch (as in TSN's RGB-diff)."""
    diff = torch.zeros_like(pixels)
    diff[1:] = pixels[1:] - pixels[:-1]
    return torch.cat([pixels, diff], dim=1)


FLOW_SIGMA = 1 / 32  # blur before differentiating, fraction of the frame (2 px at 64): keeps a few
# pixels of motion per frame inside the range where the linearised brightness constancy holds
FLOW_LIMIT = 4.0  # pixels; normal flow is clipped to +-this


def normal_flow(pixels: torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) -> (T, 2, H, W): per-pixel motion since the previous frame along the image
    gradient (the "normal flow" of gradient-based optical flow), x then y, zeros for the first frame.

    A frame difference says where something changed but not which way it went: its sign flips with
    the contrast of the moving edge, so a tower must learn products of channels to recover
    direction. Normal flow, -It * grad I / |grad I|^2 summed over colour channels, has the direction
    in its sign whatever the colours, which is what camera pans and object motion captions need.
    """
    blurred = _gaussian_blur(pixels, sigma=FLOW_SIGMA * pixels.shape[-1])
    it = blurred[1:] - blurred[:-1]  # (T-1, C, H, W)
    mean = (blurred[1:] + blurred[:-1]) / 2
    ix = torch.zeros_like(mean)
    iy = torch.zeros_like(mean)
    ix[..., 1:-1] = (mean[..., 2:] - mean[..., :-2]) / 2
    iy[..., 1:-1, :] = (mean[..., 2:, :] - mean[..., :-2, :]) / 2
    energy = (ix.square() + iy.square()).sum(1, keepdim=True) + 1e-2  # regularised: flat -> 0
    u = -(it * ix).sum(1, keepdim=True) / energy
    v = -(it * iy).sum(1, keepdim=True) / energy
    flow = torch.zeros(pixels.shape[0], 2, *pixels.shape[-2:])
    flow[1:] = torch.cat([u, v], dim=1).clamp_(-FLOW_LIMIT, FLOW_LIMIT)
    return flow


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), edges replicated.

    Each pass is a matrix product with a banded (size x size) matrix that holds the kernel, the
    replicated edge folded into its first and last columns: the same sums as a padded depthwise
    convolution, several times faster on a CPU (a depthwise conv2d runs one channel at a time)."""
    radius = max(1, round(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(t / sigma).square() / 2)
    kernel = kernel / kernel.sum()
    rows = _blur_matrix(kernel, x.shape[-2])  # (H, H)
    cols = _blur_matrix(kernel, x.shape[-1])  # (W, W)
    return rows @ x @ cols.T


def _blur_matrix(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size) M with (M @ v)[i] = sum_t kernel[t] * v[clamp(i + t - radius, 0, size - 1)]."""
    radius = (len(kernel) - 1) // 2
    out = torch.arange(size)[:, None].expand(size, len(kernel))
    taps = (out + torch.arange(-radius, radius + 1)).clamp(0, size - 1)
    matrix = torch.zeros(size, size, dtype=kernel.dtype)
    return matrix.index_put_((out, taps), kernel.expand(size, -1), accumulate=True)
