"""`aurora eval` from the command line: a real (tiny) Aurora model, an endpoint as the model under
test, the assistant prefix, the synth flags and one-line user errors."""

import json


import aurora
from aurora.generation import GenerationOptions
from aurora.synth import SynthConfig, generate
from tests.eval_fixtures.helpers import FIXTURES, judge_flags, main


def test_prefilled_answers_batch_like_single_ones(xtuner_ckpt, media):
    model = aurora.load(xtuner_ckpt)
    clips = [str(media / "videoqa/clip_a.mp4"), str(media / "vdc/vid_b.mp4")]
    texts = ["Which one?", "A much longer question about the clip, with more tokens?"]
    conversations = [[{"role": "user", "content": [{"type": "video", "video": c}, {"type": "text", "text": t}]},
                      {"role": "assistant", "content": "Best option:("}] for c, t in zip(clips, texts)]
    options = GenerationOptions(max_new_tokens=5)
    batched = model.respond_batch(conversations, num_frames=3, options=options)
    singles = [model.respond_batch([c], num_frames=3, options=options)[0] for c in conversations]
    assert [r.text for r in batched] == [r.text for r in singles]
    assert all(r.generated_tokens == 5 for r in batched)
    # the prompt ends inside the assistant turn: "... ASSISTANT: Best option:("
    _, reply = model.prepare(conversations[0], num_frames=3)
    plain, _ = model.prepare(conversations[0][:1], num_frames=3)
    assert reply.prompt_tokens > plain.shape[1]


def test_aurora_model_end_to_end(xtuner_ckpt, media, server, tmp_path, capsys):
    code = main(["eval", "videoqa", "--model", str(xtuner_ckpt), "--questions", str(FIXTURES / "videoqa/test_q.json"),
                 "--answers", str(FIXTURES / "videoqa/test_a.json"), "--video-dir", str(media / "videoqa"),
                 "--num-frames", "2", "--max-new-tokens", "3", "--batch-size", "3", "--token-kept-ratio", "0.5",
                 "--out", str(tmp_path / "qa"), "--no-progress"] + judge_flags(server))
    assert code == 0 and "| overall |" in capsys.readouterr().out
    summary = json.loads((tmp_path / "qa/summary.json").read_text())
    assert summary["items"] == 5 and summary["config"]["model"]["token_kept_ratio"] == 0.5
    assert summary["config"]["model"]["num_frames"] == 2 and summary["config"]["aurora_version"] == aurora.__version__
    record = json.loads((tmp_path / "qa/predictions.jsonl").read_text().splitlines()[0])
    assert record["model_info"][0]["generated_tokens"] <= 3 and len(record["model_info"][0]["frame_indices"]) == 2

    code = main(["eval", "mvbench", "--model", str(xtuner_ckpt), "--json-dir", str(FIXTURES / "mvbench/json"),
                 "--video-root", str(media / "mvbench"), "--max-new-tokens", "2", "--out", str(tmp_path / "mv"),
                 "--no-progress"])
    assert code == 0
    lines = [json.loads(l) for l in (tmp_path / "mv/predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and all(l["pred"].startswith("(") for l in lines)
    assert all(l["queries"][0]["prefix"] == "Best option:(" for l in lines)
    assert all(len(l["model_info"][0]["frame_indices"]) == 16 for l in lines)  # MVBench's frames, not the preset's
    assert "| **average** |" in capsys.readouterr().out


def test_endpoint_as_model_under_test(media, server, tmp_path):
    code = main(["eval", "mvbench", "--endpoint", server.url, "--endpoint-model", "any", "--json-dir",
                 str(FIXTURES / "mvbench/json"), "--video-root", str(media / "mvbench"), "--num-frames", "4",
                 "--tasks", "object_shuffle", "--out", str(tmp_path / "mv"), "--no-progress"])
    assert code == 0
    lines = [json.loads(l) for l in (tmp_path / "mv/predictions.jsonl").read_text().splitlines()]
    assert [l["pred"] for l in lines] == ["(A) first"] * 2  # the pre-filled turn was continued
    assert lines[0]["model_info"][0]["frame_indices"] == [2, 8, 14, 19]  # 4 segment middles of 24 frames
    code = main(["eval", "videomme", "--endpoint", server.url, "--endpoint-model", "any", "--endpoint-media", "video",
                 "--data", str(FIXTURES / "videomme/videomme.json"), "--video-dir", str(media / "videomme"),
                 "--limit", "2", "--out", str(tmp_path / "mme"), "--no-progress"])
    assert code == 0
    lines = [json.loads(l) for l in (tmp_path / "mme/predictions.jsonl").read_text().splitlines()]
    assert [l["predictions"][0] for l in lines] == ["video", "video"]


def test_user_mistakes_are_one_line_errors(media, tmp_path, capsys):
    qa = ["--questions", str(FIXTURES / "videoqa/test_q.json"), "--answers", str(FIXTURES / "videoqa/test_a.json"),
          "--video-dir", str(media / "videoqa"), "--out", str(tmp_path)]
    assert main(["eval", "videoqa", "--endpoint", "http://127.0.0.1:9/v1", "--endpoint-model", "m"] + qa) == 2
    assert "needs a judge" in capsys.readouterr().err
    assert main(["eval", "videoqa", "--endpoint", "http://x/v1", "--model", "m", "--judge-url", "http://x/v1",
                 "--judge-model", "j"] + qa) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["eval", "videoqa", "--endpoint", "http://x/v1", "--endpoint-model", "m", "--judge-url", "http://x/v1",
                 "--judge-model", "j", "--questions", str(tmp_path / "missing.json"), "--answers", "a.json",
                 "--video-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "missing.json not found" in capsys.readouterr().err
    assert main(["eval", "mvbench", "--endpoint", "http://x/v1", "--endpoint-model", "m", "--json-dir",
                 str(FIXTURES / "mvbench/json"), "--video-root", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "check --video-root" in capsys.readouterr().err


def test_synth_keeps_its_flags(xtuner_ckpt, tmp_path, capsys):
    generate(SynthConfig(num_clips=2, size=64, frames=8, seed=5, splits=(0, 0, 1), out=str(tmp_path / "s")),
             progress=False)
    split = tmp_path / "s/test.jsonl"
    code = main(["eval", "synth", "--model", str(xtuner_ckpt), "--data", str(split), "--out", str(tmp_path / "o"),
                 "--token-kept-ratio", "0.5", "--max-new-tokens", "4", "--limit", "2", "--batch-size", "2",
                 "--num-frames", "4", "--device", "cpu", "--dtype", "float32"])
    assert code == 0 and "| 0.5 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "o/summary.json").read_text())["results"]["0.5"]["n"] == 2
    code = main(["eval", "synth", "--model", str(xtuner_ckpt), "--data", str(tmp_path / "nope.jsonl"),
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "aurora synth" in capsys.readouterr().err
