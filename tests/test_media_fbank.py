"""aurora.media.fbank: ImageBind's clip layout and Kaldi filter banks (Video-LLaMA's audio input),
checked against an independent computation written here from Kaldi's definition, itself checked
against kaldi-native-fbank (which refuses 128 bins at this FFT size, so that check uses 80)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from aurora.errors import ConfigError, MediaError
from aurora.media.fbank import (
    MEAN,
    STD,
    audio_features,
    clip_features,
    clip_spans,
    cut_clips,
    kaldi_fbank,
    load_audio_features,
)
from aurora.testing.media import tone, write_audio

RATE = 16000


def reference_fbank(x: np.ndarray, bins: int = 128, rate: int = RATE) -> np.ndarray:
    """Kaldi's compute-fbank-feats with snip_edges, DC offset removal, pre-emphasis 0.97, a symmetric
    Hann ("hanning") window, a 512-point power spectrum, triangles on the mel axis from 20 Hz to Nyquist
    over the FFT's first 256 bins, and log(max(energy, float32 eps))."""
    x = np.asarray(x, np.float64)
    count = 1 + (len(x) - 400) // 160
    frames = np.stack([x[i * 160:i * 160 + 400] for i in range(count)])
    frames = frames - frames.mean(axis=1, keepdims=True)
    emphasised = frames - 0.97 * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)
    power = np.abs(np.fft.rfft(emphasised * window, 512)) ** 2  # (count, 257)

    def mel(f):
        return 1127.0 * np.log(1 + f / 700.0)

    low, high = mel(20.0), mel(rate / 2)
    delta = (high - low) / (bins + 1)
    m = mel(np.arange(256) * rate / 512)
    weights = np.zeros((bins, 257))
    for b in range(bins):
        left, centre, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        rising, falling = (m - left) / (centre - left), (right - m) / (right - centre)
        weights[b, :256] = np.where((m > left) & (m < right), np.where(m <= centre, rising, falling), 0)
    return np.log(np.maximum(power @ weights.T, np.finfo(np.float32).eps))


def signals() -> dict[str, np.ndarray]:
    t = np.arange(2 * RATE) / RATE
    noise = np.random.default_rng(0).normal(0, 0.1, 2 * RATE)
    return {"tone": (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), "noise": noise.astype(np.float32)}


@pytest.mark.parametrize("name", ["tone", "noise"])
def test_filter_banks_equal_the_independent_computation(name):
    x = signals()[name]
    x = x - x.mean()
    ours, theirs = kaldi_fbank(x), reference_fbank(x)
    assert ours.shape == theirs.shape == (198, 128)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["tone", "noise"])
def test_the_independent_computation_is_kaldis(name):
    import kaldi_native_fbank as knf
    x = signals()[name]
    options = knf.FbankOptions()
    options.frame_opts.dither = 0
    options.frame_opts.window_type = "hanning"
    options.mel_opts.num_bins = 80
    options.use_energy, options.htk_compat = False, True
    online = knf.OnlineFbank(options)
    online.accept_waveform(RATE, x.tolist())
    online.input_finished()
    kaldi = np.stack([np.array(online.get_frame(i)) for i in range(online.num_frames_ready)])
    np.testing.assert_allclose(reference_fbank(x, bins=80), kaldi, atol=2e-3, rtol=0)  # knf computes in float32
    np.testing.assert_allclose(kaldi_fbank(x, num_mel_bins=80), kaldi, atol=2e-3, rtol=0)


def test_clips_spread_evenly_over_the_track():
    spans = clip_spans(16.0, num_clips=8)
    assert spans[0] == (0, 2) and spans[-1] == (14, 16)
    assert [start for start, _ in spans] == [Fraction(14, 7) * k for k in range(8)]
    assert all(start == 0 and end == 2 for start, end in clip_spans(1.5, num_clips=3))  # shorter than a clip


def test_cut_clips_take_the_published_sample_indices():
    samples = np.arange(int(5.5 * RATE), dtype=np.float32)
    clips = cut_clips(samples, RATE, num_clips=3)
    step = Fraction(3.5) / 2
    assert [int(c[0]) for c in clips] == [int(step * k * RATE) for k in range(3)]
    assert all(len(c) == 2 * RATE for c in clips)
    short = cut_clips(samples[:RATE], RATE, num_clips=2)
    assert [len(c) for c in short] == [RATE, RATE]  # the whole (short) track, twice


def test_a_clip_is_mean_removed_padded_and_normalised():
    t = np.arange(RATE) / RATE  # 1 s: 98 frames, padded to 204
    clip = np.sin(2 * np.pi * 300 * t) + 0.25  # a DC offset the clip's mean removal takes away
    features = clip_features(clip)
    assert features.shape == (1, 128, 204) and features.dtype == np.float32
    expected = (reference_fbank(clip - clip.mean()).T - MEAN) / STD
    np.testing.assert_allclose(features[0, :, :98], expected, atol=1e-4)
    np.testing.assert_allclose(features[0, :, 98:], -MEAN / STD, atol=1e-6)  # zero frames, normalised
    long = clip_features(np.tile(clip, 3))  # 298 frames: cropped to 204
    assert long.shape == (1, 128, 204)


def test_a_file_becomes_eight_clips(tmp_path):
    path = write_audio(tmp_path / "tone.wav", tone(3.0, 440, RATE, 0.3), rate=RATE)
    features = load_audio_features(path)
    assert features.shape == (8, 1, 128, 204)
    bin_440 = int(np.argmax(features[0, 0, :, 100]))
    assert 10 < bin_440 < 40  # the tone's energy sits low in the mel range
    assert audio_features(np.ones(RATE, np.float32), num_clips=3).shape == (3, 1, 128, 204)


def test_bad_input_is_one_line():
    with pytest.raises(MediaError):
        audio_features(np.zeros(0, np.float32))
    with pytest.raises(ConfigError):
        clip_spans(4.0, num_clips=0)
