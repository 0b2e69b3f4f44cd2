"""Opening media files: the only place in Aurora that decodes videos and images.

``load_visual`` picks the loader by extension; ``load_video`` samples frames (seeking
rather than decoding the whole file); ``load_image`` returns one frame. All return a
``Frames`` whose ``array`` is (T, H, W, 3) uint8 RGB, upright. Bad files raise
``aurora.errors.MediaError``, bad options ``aurora.errors.ConfigError``. ``load_audio``
decodes sound (audio files or a video's track) to float32 mono; ``load_visual(...,
audio=True)`` attaches it to the ``Frames``.
"""

from aurora.media.audio import add_audio, has_audio, load_audio
from aurora.media.frames import Frames
from aurora.media.image import load_image
from aurora.media.limits import MediaLimits
from aurora.media.clips import clip_indices, clip_share, sample_clips
from aurora.media.loader import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, check_visual, load_clips, load_visual
from aurora.media.orientation import apply_rotation
from aurora.media.sampling import fps_indices, segment_middle_indices, uniform_indices
from aurora.media.video import load_video, probe_video

__all__ = [
    "Frames",
    "IMAGE_EXTENSIONS",
    "MediaLimits",
    "VIDEO_EXTENSIONS",
    "add_audio",
    "apply_rotation",
    "check_visual",
    "clip_indices",
    "clip_share",
    "load_clips",
    "sample_clips",
    "fps_indices",
    "has_audio",
    "load_audio",
    "load_image",
    "load_video",
    "load_visual",
    "probe_video",
    "segment_middle_indices",
    "uniform_indices",
]
