"""Synthetic video clips with exact ground truth, for training and scoring a small captioner.

Each clip is a scene along the five aspects of the VDC benchmark: a camera motion (moving only
the background), a background (type and colours), and 1-3 objects (kind, colour, size, motion,
an optional event), with five reference captions in one canonical phrasing.

    from aurora.synth import SynthConfig, generate
    generate(SynthConfig(num_clips=5000, out="data/synth"), workers=2)

`sample_scene` -> `Scene`, `render(scene, config)` -> (T, H, W, 3) uint8, `captions(scene)` -> dict;
`aurora.eval.synth_score` reads the attributes back from generated captions.
"""

from aurora.synth.captions import CAPTION_PROMPTS, captions
from aurora.synth.config import SPLITS, SynthConfig
from aurora.synth.dataset import generate, record, scene_for, write_mp4
from aurora.synth.render import render
from aurora.synth.scene import Background, Scene, SceneObject, sample_scene, track

__all__ = [
    "Background",
    "CAPTION_PROMPTS",
    "SPLITS",
    "Scene",
    "SceneObject",
    "SynthConfig",
    "captions",
    "generate",
    "record",
    "render",
    "sample_scene",
    "scene_for",
    "track",
    "write_mp4",
]
