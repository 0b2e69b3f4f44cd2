"""The `aurora` command end to end on generated media, and its one-line errors."""

import json
import subprocess
import sys

import pytest

from aurora.cli import main
from aurora.testing.media import make_frames, truncate_file, write_audio_only, write_image, write_text_file, write_video


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    frames = make_frames(24, 64, 96)
    write_video(root / "clip.mp4", frames, fps=8)
    write_image(root / "frame.png", frames[5])
    write_text_file(root / "text.mp4")
    write_text_file(root / "notes.txt")
    write_audio_only(root / "audio.mp4")
    truncated = write_video(root / "truncated.mp4", frames, fps=8)
    truncate_file(truncated, 0.3)
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("layout", ["xtuner", "hf"])
def test_caption_json_schema(capsys, checkpoints, media_dir, layout):
    ckpt = checkpoints(layout, "llama")
    code, out, err = run(capsys, "caption", media_dir / "clip.mp4", "--model", ckpt, "--json", "--num-frames", "4",
                         "--token-kept-ratio", "0.5", "--max-new-tokens", "6")
    assert code == 0, err
    record = json.loads(out)
    assert set(record) == {"caption", "model", "frame_indices", "frame_timestamps", "visual_tokens_per_frame",
                           "visual_tokens", "prompt_tokens", "generated_tokens", "timings"}
    assert record["frame_indices"] == [0, 7, 15, 23]  # np.linspace(0, 23, 4) as ints
    assert record["frame_timestamps"] == pytest.approx([i / 8 for i in (0, 7, 15, 23)], abs=1e-3)
    # 64 patches + CLS, 2 of 3 layers run, each merging r = int(64 * 0.5 / 3) = 10: 65 - 20 - CLS
    assert record["visual_tokens_per_frame"] == 44
    assert record["visual_tokens"] == {"patches": 4 * 64, "encoder": 4 * 44, "language_model": 4 * 44}
    assert 1 <= record["generated_tokens"] <= 6
    assert set(record["timings"]) == {"decode", "preprocess", "encode", "prefill", "generate"}


def test_caption_streams_text_and_is_deterministic(capsys, xtuner_ckpt, media_dir):
    argv = ("caption", media_dir / "clip.mp4", "--model", xtuner_ckpt, "--max-new-tokens", "8")
    code, first, _ = run(capsys, *argv)
    code2, second, _ = run(capsys, *argv)
    assert code == code2 == 0 and first == second and first.endswith("\n")
    code, as_json, _ = run(capsys, *argv, "--json")
    assert json.loads(as_json)["caption"] + "\n" == first


def test_auroracap_flag_spellings_are_aliases(capsys, xtuner_ckpt, media_dir):
    code, out, err = run(capsys, "caption", "--visual_input", media_dir / "clip.mp4", "--model_path", xtuner_ckpt,
                         "--num_frm", "2", "--token_kept_ratio", "0.5", "--max_new_tokens", "3", "--top_p", "1",
                         "--num_beams", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["frame_indices"] == [0, 23]


def test_a_ratio_below_tomes_floor_is_said_in_one_line(capsys, media_dir):
    """The bundled model's 4-layer tower stops ToMe at 10 of 64 tokens a frame: asking for fewer
    with `tome` warns (the tokens stay at the floor); `both` reaches the ratio and says nothing."""
    clip = media_dir / "clip.mp4"
    code, out, err = run(capsys, "caption", clip, "--token-kept-ratio", "0.05", "--max-new-tokens", "2", "--json")
    assert code == 0, err
    assert err.strip().splitlines() == ["aurora: warning: ToMe keeps at least 10 of 64 tokens a frame in this tower "
                                        "(16%), more than --token-kept-ratio 0.05 asks; --reduction both reaches it "
                                        "by merging across frames too"]
    assert json.loads(out)["visual_tokens_per_frame"] == 10
    code, out, err = run(capsys, "caption", clip, "--token-kept-ratio", "0.05", "--reduction", "both",
                         "--max-new-tokens", "2", "--json")
    assert code == 0 and "warning" not in err, err
    tokens = json.loads(out)["visual_tokens"]
    assert tokens["language_model"] == round(0.05 * tokens["patches"])
    code, out, err = run(capsys, "caption", clip, "--token-kept-ratio", "0.2", "--max-new-tokens", "2")
    assert code == 0 and "warning" not in err, err


def test_caption_image(capsys, hf_ckpt, media_dir):
    code, out, err = run(capsys, "caption", media_dir / "frame.png", "--model", hf_ckpt, "--json", "--max-new-tokens", "3")
    assert code == 0, err
    assert json.loads(out)["frame_indices"] == [0]


def test_chat_reads_questions_from_stdin(capsys, monkeypatch, xtuner_ckpt, media_dir):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("What moves?\n\nAnd then?\n"))
    code, out, err = run(capsys, "chat", media_dir / "clip.mp4", "--model", xtuner_ckpt, "--max-new-tokens", "4")
    assert code == 0, err
    assert out.count("\n") == 2  # two answers, one line each


def test_convert_writes_hf_layout(capsys, xtuner_ckpt, tmp_path):
    code, out, err = run(capsys, "convert", xtuner_ckpt, tmp_path / "hf")
    assert code == 0, err
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "llava"
    assert list((tmp_path / "hf").glob("*.safetensors"))
    code, out, err = run(capsys, "convert", xtuner_ckpt, tmp_path / "hf")  # refuses to overwrite
    assert code == 2 and "not an empty directory" in err


def test_convert_averages_fine_tunes_of_one_model(capsys, xtuner_ckpt, tmp_path):
    import torch

    import aurora
    from aurora.errors import ConfigError
    from aurora.models import average_weights, save

    base = aurora.load(xtuner_ckpt)
    tuned = aurora.load(xtuner_ckpt)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(torch.randn_like(p))
    save(tuned, tmp_path / "tuned")
    code, out, err = run(capsys, "convert", xtuner_ckpt, tmp_path / "soup", "--average", tmp_path / "tuned",
                         "--weight", "0.25", "--to", "xtuner")
    assert code == 0, err
    soup = aurora.load(tmp_path / "soup")
    before, after, other = base.state_dict(), soup.state_dict(), tuned.state_dict()
    for name, value in before.items():
        expected = 0.75 * value + 0.25 * other[name] if value.is_floating_point() else value
        torch.testing.assert_close(after[name], expected, msg=name)
    assert any(not torch.equal(after[k], before[k]) for k in before)
    default = aurora.load()  # the bundled model: the same family, other shapes
    with pytest.raises(ConfigError, match="differ in"):
        average_weights(base, default)
    code, out, err = run(capsys, "convert", xtuner_ckpt, tmp_path / "bad", "--average", tmp_path / "tuned",
                         "--weight", "1.5")
    assert code == 2 and "must be in [0, 1]" in err and len(err.strip().splitlines()) == 1

    third = aurora.load(xtuner_ckpt)  # several: the uniform mean of all
    with torch.no_grad():
        for p in third.parameters():
            p.mul_(3.0)
    save(third, tmp_path / "third")
    code, out, err = run(capsys, "convert", xtuner_ckpt, tmp_path / "soup3", "--average", tmp_path / "tuned",
                         tmp_path / "third", "--to", "xtuner")
    assert code == 0, err
    after, last = aurora.load(tmp_path / "soup3").state_dict(), third.state_dict()
    for name, value in before.items():
        expected = (value + other[name] + last[name]) / 3 if value.is_floating_point() else value
        torch.testing.assert_close(after[name], expected, msg=name)
    code, out, err = run(capsys, "convert", xtuner_ckpt, tmp_path / "bad3", "--average", tmp_path / "tuned",
                         tmp_path / "third", "--weight", "0.3")
    assert code == 2 and "averaged uniformly" in err and len(err.strip().splitlines()) == 1


BAD_INPUTS = {
    "missing file": (lambda d, c: ["caption", d / "nope.mp4", "--model", c], "no such file"),
    "directory": (lambda d, c: ["caption", d, "--model", c], "directory"),
    "text named mp4": (lambda d, c: ["caption", d / "text.mp4", "--model", c], "text.mp4"),
    "truncated mp4": (lambda d, c: ["caption", d / "truncated.mp4", "--model", c], "truncated.mp4"),
    "audio only": (lambda d, c: ["caption", d / "audio.mp4", "--model", c], "no video stream"),
    "ratio zero": (lambda d, c: ["caption", d / "clip.mp4", "--model", c, "--token-kept-ratio", "0"], "(0, 1]"),
    "ratio above one": (lambda d, c: ["caption", d / "clip.mp4", "--model", c, "--token_kept_ratio", "1.5"], "(0, 1]"),
    "zero frames asked": (lambda d, c: ["caption", d / "clip.mp4", "--model", c, "--num-frames", "0"], ">= 1"),
    "negative fps": (lambda d, c: ["caption", d / "clip.mp4", "--model", c, "--fps", "-1"], "> 0"),
    "unsupported extension": (lambda d, c: ["caption", d / "notes.txt", "--model", c], "unsupported extension"),
    "missing checkpoint": (lambda d, c: ["caption", d / "clip.mp4", "--model", d / "no-such-model"], "not found"),
    "not a checkpoint": (lambda d, c: ["caption", d / "clip.mp4", "--model", d], "not a checkpoint"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_code_2(capsys, xtuner_ckpt, media_dir, case):
    make_argv, fragment = BAD_INPUTS[case]
    code, out, err = run(capsys, *make_argv(media_dir, xtuner_ckpt))
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert fragment in err
    assert "Traceback" not in err


def test_zero_frame_video(capsys, xtuner_ckpt, tmp_path):
    import av

    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as container:  # a video stream with no frames in it
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    code, out, err = run(capsys, "caption", path, "--model", xtuner_ckpt)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "empty.mp4" in err


def test_unknown_layout_and_partial_checkpoint(capsys, xtuner_ckpt, media_dir, tmp_path):
    import shutil

    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text('{"model_type": "bert"}')
    code, _, err = run(capsys, "caption", media_dir / "clip.mp4", "--model", unknown)
    assert code == 2 and "unknown checkpoint layout" in err
    partial = shutil.copytree(xtuner_ckpt, tmp_path / "partial")
    (partial / "projector" / "model.safetensors").unlink()
    code, _, err = run(capsys, "caption", media_dir / "clip.mp4", "--model", partial)
    assert code == 2 and "incomplete" in err and len(err.strip().splitlines()) == 1


def test_console_entry_point_and_debug_traceback(xtuner_ckpt, media_dir):
    """A real process: JSON on stdout; a bad file is one line without --debug, a traceback with it."""
    base = [sys.executable, "-m", "aurora", "caption"]
    ok = subprocess.run(base + [str(media_dir / "clip.mp4"), "--model", str(xtuner_ckpt), "--json", "--max-new-tokens", "2"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["generated_tokens"] >= 1
    bad = subprocess.run(base + [str(media_dir / "text.mp4"), "--model", str(xtuner_ckpt)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    debug = subprocess.run(base + [str(media_dir / "text.mp4"), "--model", str(xtuner_ckpt), "--debug"], capture_output=True, text=True, timeout=300)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize("layout", ["xtuner", "hf"])
def test_python_api_on_files(checkpoints, media_dir, layout):
    import aurora

    model = aurora.load(checkpoints(layout, "llama"))
    video = model.caption(str(media_dir / "clip.mp4"), num_frames=3, token_kept_ratio=0.2, max_new_tokens=4)
    assert video.frame_indices == [[0, 11, 23]] and video.generated_tokens >= 1
    image = model.caption(media_dir / "frame.png", max_new_tokens=4)
    assert image.frame_indices == [[0]]
    pieces = list(model.caption(media_dir / "frame.png", max_new_tokens=4, stream=True))
    assert "".join(pieces) == image.text


def test_the_cli_needs_no_optional_extra_to_start():
    """A base install (`pip install -e .`) runs `aurora caption`: building the parser imports every
    eval task, none of which may need an extra (httpx, matplotlib, fastapi, ...) at import time."""
    import subprocess
    import sys

    blocked = ["httpx", "matplotlib", "fastapi", "uvicorn", "gradio", "openai", "pycocoevalcap", "peft", "yaml"]
    code = ("import sys\nfor name in %r: sys.modules[name] = None\n"
            "from aurora.cli import build_parser\nbuild_parser().parse_args(['caption', 'x.mp4'])\n" % blocked)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-800:]
