"""aurora.media audio: load_audio, has_audio, add_audio and load_visual(audio=True)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from aurora.errors import ConfigError, MediaError
from aurora.media import add_audio, has_audio, load_audio, load_visual
from aurora.testing.media import (
    make_frames,
    tone,
    truncate_file,
    write_audio,
    write_text_file,
    write_video,
    write_video_with_audio,
)

RATE_IN, RATE_OUT = 48000, 16000
# One codec frame (aac 1024, mp3 1152 samples at 48 kHz) in output samples: the granularity
# at which an encoded track may run longer than what was written.
ONE_FRAME = 1152 * RATE_OUT // RATE_IN


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def two_tones(rate: int = RATE_IN) -> np.ndarray:
    """(1, 2 s): 1 s of 440 Hz at amplitude 0.1, then 1 s of 880 Hz at amplitude 0.4."""
    return np.concatenate([tone(1.0, 440, rate, 0.1), tone(1.0, 880, rate, 0.4)], axis=1)


def one_line(error: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(error.value)
    return str(error.value)


@pytest.mark.parametrize("extension", [".wav", ".flac", ".m4a", ".mp3"])
def test_a_440_hz_tone_reads_back_at_16_khz(tmp_path, extension):
    path = write_audio(tmp_path / f"tone{extension}", tone(1.5, 440, RATE_IN, 0.3))
    samples, rate = load_audio(path)
    assert rate == RATE_OUT and samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 1.5 * RATE_OUT) <= ONE_FRAME
    assert abs(dominant_hz(samples, rate) - 440) <= 5
    assert rms(samples) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)  # lossy codecs lose a little


def test_stereo_48_khz_comes_back_mono_16_khz_as_the_channel_mean(tmp_path):
    left, right = tone(1.0, 440, RATE_IN, 0.3), tone(1.0, 440, RATE_IN, 0.1)
    path = write_audio(tmp_path / "stereo.wav", np.concatenate([left, right]))
    samples, rate = load_audio(path)
    assert rate == RATE_OUT and samples.shape == (RATE_OUT,)
    assert rms(samples) == pytest.approx(0.2 / np.sqrt(2), rel=0.01)  # mean of 0.3 and 0.1
    assert abs(dominant_hz(samples, rate) - 440) <= 5


@pytest.mark.parametrize("name", ["cut.wav", "cut.m4a", "cut.mkv", "cut.mp4"])
def test_start_and_end_cut_at_the_right_samples(tmp_path, name):
    if name.endswith((".mkv", ".mp4")):
        path = write_video_with_audio(tmp_path / name, make_frames(16), two_tones(), RATE_IN, fps=8)
    else:
        path = write_audio(tmp_path / name, two_tones())
    first, _ = load_audio(path, start=0.25, end=0.75)
    second, _ = load_audio(path, start=1.25, end=1.75)
    assert len(first) == len(second) == 8000
    assert abs(dominant_hz(first, RATE_OUT) - 440) <= 5
    assert abs(dominant_hz(second, RATE_OUT) - 880) <= 5

    # Across the change at 1.0 s: the loud part starts 0.5 s into the cut.
    around, _ = load_audio(path, start=0.5, end=1.5)
    envelope = np.abs(around)
    loud = np.flatnonzero(envelope > 0.25)  # only the 0.4-amplitude tone reaches this
    assert abs(loud[0] - 8000) <= 8  # 0.5 ms: the sine's rise, codec and resampler smearing
    assert rms(around[:7900]) == pytest.approx(0.1 / np.sqrt(2), rel=0.05)


def test_a_cut_past_the_end_is_short_or_empty(tmp_path):
    path = write_audio(tmp_path / "short.wav", tone(1.0))
    tail, _ = load_audio(path, start=0.75, end=3.0)
    assert len(tail) == 4000
    nothing, _ = load_audio(path, start=2.0)
    assert len(nothing) == 0


def test_a_video_without_sound(tmp_path):
    path = write_video(tmp_path / "silent.mp4", make_frames(8))
    assert not has_audio(path)
    with pytest.raises(MediaError) as error:
        load_audio(path)
    assert "no audio stream" in one_line(error) and "silent.mp4" in one_line(error)
    frames = load_visual(path, num_frames=4, audio=True)
    assert frames.audio is None and frames.sample_rate is None and len(frames.array) == 4


def test_load_visual_attaches_the_sound_track_when_asked(tmp_path):
    path = write_video_with_audio(tmp_path / "talk.mp4", make_frames(16), two_tones(), RATE_IN, fps=8)
    assert has_audio(path)
    assert load_visual(path, num_frames=4).audio is None  # default unchanged: no audio
    frames = load_visual(path, num_frames=4, audio=True)
    assert frames.sample_rate == RATE_OUT and frames.audio.dtype == np.float32
    assert abs(len(frames.audio) - 2 * RATE_OUT) <= ONE_FRAME
    assert frames.indices == [0, 5, 10, 15]  # the frames are sampled as without audio


def test_clips_get_their_own_spans_laid_end_to_end(tmp_path):
    path = write_video_with_audio(tmp_path / "clips.mkv", make_frames(16), two_tones(), RATE_IN, fps=8)
    frames = load_visual(path, num_frames=4)
    clipped = dataclasses.replace(frames, clips=[(0.0, 0.5), (1.5, 2.25)])  # the second runs past the end
    audio = add_audio(clipped).audio
    assert len(audio) == 8000 + 12000
    assert abs(dominant_hz(audio[:8000], RATE_OUT) - 440) <= 5
    assert abs(dominant_hz(audio[8000:16000], RATE_OUT) - 880) <= 5
    assert not np.any(audio[16000 + 100:])  # zeros past the track's end


def test_an_image_has_no_audio(tmp_path):
    from aurora.testing.media import write_image

    path = write_image(tmp_path / "still.png", make_frames(1)[0])
    assert load_visual(path, audio=True).audio is None


def test_long_audio_is_refused_in_one_line(tmp_path):
    path = write_audio(tmp_path / "long.wav", tone(2.0))
    with pytest.raises(MediaError) as error:
        load_audio(path, max_seconds=1.0)
    assert "limit" in one_line(error)
    samples, _ = load_audio(path, start=0.5, end=1.25, max_seconds=1.0)  # a part within it is fine
    assert len(samples) == 12000


def test_corrupt_audio_names_the_file(tmp_path):
    text = write_text_file(tmp_path / "notes.mp3")
    with pytest.raises(MediaError) as error:
        load_audio(text)
    assert "notes.mp3" in one_line(error)
    cut = write_audio(tmp_path / "cut.m4a", tone(2.0))
    truncate_file(cut, 0.3)  # the index (moov) is at the end: gone
    with pytest.raises(MediaError) as error:
        load_audio(cut)
    assert "cut.m4a" in one_line(error)


@pytest.mark.parametrize(
    "kwargs", [{"sample_rate": 0}, {"start": -1.0}, {"start": 1.0, "end": 0.5}, {"max_seconds": 0}]
)
def test_bad_options_are_config_errors(tmp_path, kwargs):
    path = write_audio(tmp_path / "tone.wav", tone(0.5))
    with pytest.raises(ConfigError) as error:
        load_audio(path, **kwargs)
    one_line(error)
