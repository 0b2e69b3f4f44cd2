"""Sound as an audio encoder sees it: a track cut into fixed clips, each a Kaldi log-mel filter bank.

The layout is ImageBind's, which Video-LLaMA's audio branch reads: 16 kHz mono, `num_clips`
clips of `clip_duration` seconds spread evenly over the track (the first at 0 s, the last ending
at its end; all at 0 s when the track is shorter than a clip), each turned into 128 Kaldi filter
bank bins per 25 ms frame every 10 ms (hanning window, no dither, no energy, the clip's mean
removed first), zero-padded or cropped to 204 frames, then normalised with ImageBind's audio mean
-4.268 and std 9.138. The filter banks come from transformers' numpy port of Kaldi's
(`transformers.audio_utils`), tested against kaldi-native-fbank.

One difference on purpose: the published code reads the first channel of a multi-channel track
(torchaudio's Kaldi port takes channel 0); Aurora averages the channels (`load_audio`), as it
does for every model.
"""

from __future__ import annotations

import os
from fractions import Fraction
from functools import lru_cache

import numpy as np

from aurora.errors import ConfigError, MediaError
from aurora.media.audio import SAMPLE_RATE, load_audio

CLIP_SECONDS = 2.0  # ImageBind's clip_duration
NUM_CLIPS = 8  # Video-LLaMA's demo (ImageBind's own default is 3)
MEL_BINS, TARGET_FRAMES = 128, 204
MEAN, STD = -4.268, 9.138  # ImageBind's audio normalisation
FRAME_LENGTH, FRAME_SHIFT = 400, 160  # 25 ms and 10 ms at 16 kHz
FFT_LENGTH = 512  # Kaldi rounds the frame up to a power of two
LOG_FLOOR = float(np.finfo(np.float32).eps)  # Kaldi's floor before the log


def clip_spans(duration: float, num_clips: int = NUM_CLIPS, clip_seconds: float = CLIP_SECONDS) -> list[tuple[Fraction, Fraction]]:
    """(start, end) seconds of each clip, spread evenly: clip k starts at k x (duration - clip) /
    (num_clips - 1), as pytorchvideo's ConstantClipsPerVideoSampler (ImageBind's) places them.
    Exact fractions, so cutting at int(t x rate) gives the published sample indices."""
    if not isinstance(num_clips, int) or num_clips < 1:
        raise ConfigError(f"num_clips must be an integer >= 1, got {num_clips!r}")
    clip = Fraction(clip_seconds)
    step = Fraction(max(Fraction(duration) - clip, 0)) / max(num_clips - 1, 1)
    return [(step * k, step * k + clip) for k in range(num_clips)]


def cut_clips(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, num_clips: int = NUM_CLIPS,
              clip_seconds: float = CLIP_SECONDS) -> list[np.ndarray]:
    """A whole track (N,) -> `num_clips` pieces [int(start x rate), int(end x rate)) (shorter at the end
    of a track under one clip long)."""
    spans = clip_spans(len(samples) / sample_rate, num_clips, clip_seconds)
    return [samples[int(start * sample_rate):int(end * sample_rate)] for start, end in spans]


@lru_cache(maxsize=4)
def _filters(sample_rate: int, num_mel_bins: int) -> tuple[np.ndarray, np.ndarray]:
    import warnings

    from transformers.audio_utils import mel_filter_bank, window_function

    with warnings.catch_warnings():  # at 128 bins and a 512-point FFT Kaldi's lowest filter is empty: expected
        warnings.simplefilter("ignore", UserWarning)
        mel = mel_filter_bank(num_frequency_bins=FFT_LENGTH // 2 + 1, num_mel_filters=num_mel_bins, min_frequency=20,
                              max_frequency=sample_rate // 2, sampling_rate=sample_rate, norm=None,
                              mel_scale="kaldi", triangularize_in_mel_space=True)  # Kaldi's triangles, drawn on the mel axis
    return window_function(FRAME_LENGTH, "hann", periodic=False), mel  # Kaldi's "hanning" is symmetric


def kaldi_fbank(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = MEL_BINS) -> np.ndarray:
    """(N,) float samples -> (frames, num_mel_bins) log-mel energies as Kaldi's `compute-fbank-feats`
    computes them with ImageBind's options (snip_edges: only whole frames; pre-emphasis 0.97; DC
    offset removed per frame; power spectrum; no dither, no energy). Under one frame long: (0, bins)."""
    from transformers.audio_utils import spectrogram

    if sample_rate != SAMPLE_RATE:
        raise ConfigError(f"the filter banks are defined at {SAMPLE_RATE} Hz, got {sample_rate}")
    samples = np.asarray(samples, dtype=np.float64)
    if len(samples) < FRAME_LENGTH:
        return np.zeros((0, num_mel_bins), np.float32)
    window, mel = _filters(sample_rate, num_mel_bins)
    features = spectrogram(samples, window, frame_length=FRAME_LENGTH, hop_length=FRAME_SHIFT, fft_length=FFT_LENGTH,
                           power=2.0, center=False, preemphasis=0.97, mel_filters=mel, log_mel="log",
                           mel_floor=LOG_FLOOR, remove_dc_offset=True)  # (bins, frames)
    return features.T.astype(np.float32)


def clip_features(clip: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One clip (n,) -> (1, 128, 204) normalised filter banks, ImageBind's `waveform2melspec` + Normalize."""
    clip = np.asarray(clip, dtype=np.float64)
    if len(clip):
        clip = clip - clip.mean()
    bank = kaldi_fbank(clip, sample_rate)[:TARGET_FRAMES]  # (frames, bins), cropped
    bank = np.pad(bank, ((0, TARGET_FRAMES - len(bank)), (0, 0)))  # zero frames after the sound
    return ((bank.T - MEAN) / STD)[None].astype(np.float32)


def audio_features(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, num_clips: int = NUM_CLIPS,
                   clip_seconds: float = CLIP_SECONDS) -> np.ndarray:
    """A whole track (N,) -> (num_clips, 1, 128, 204): the audio encoder's input."""
    if samples is None or len(samples) == 0:
        raise MediaError("the audio track is empty: no sound to describe")
    return np.stack([clip_features(c, sample_rate) for c in cut_clips(samples, sample_rate, num_clips, clip_seconds)])


def load_audio_features(path: str | os.PathLike, num_clips: int = NUM_CLIPS,
                        clip_seconds: float = CLIP_SECONDS) -> np.ndarray:
    """A file's sound (an audio file or a video's track) -> (num_clips, 1, 128, 204)."""
    samples, rate = load_audio(path, SAMPLE_RATE)
    return audio_features(samples, rate, num_clips, clip_seconds)
