"""LongVideoBench and MLVU on data in their releases' layouts (written here): the published frames,
prompts, subtitle selection, answer reading and accuracy by duration."""

import json
import random

import pytest

from aurora.eval.frames import load_frames, window_indices
from aurora.eval.task import FrameSpec
from aurora.eval.tasks import longvideobench, mlvu
from aurora.testing.media import make_frames, write_video
from tests.eval_fixtures.helpers import Scripted, evaluate, frames_of, main

# ---- LongVideoBench ----------------------------------------------------------------------------

LVB_ROWS = [  # id, video, duration group, category, candidates, correct choice, the model's reply
    ("q1", "v1.mp4", 15, "T3O", ["left", "right", "up", "down"], 1, "B"),
    ("q2", "v2.mp4", 60, "S2E", ["red", "green", "blue"], 0, "C"),
    ("q3", "v2.mp4", 60, "T3O", ["one", "two", "three", "four"], 2, "I don't know"),  # a seeded random guess
    ("q4", "v1.mp4", 15, "S2E", ["a", "b", "c", "d"], 3, "Best option: D"),  # the prefix is deleted: "D"
]
SUBTITLES = {
    "v1.json": [{"timestamp": [0.2, 0.9], "text": "hello"},  # widened to (0.05, 1.05): holds frame time 1.0
                {"timestamp": [1.2, 1.8], "text": "skipped"},  # widened to (1.0, 2.0): no frame strictly inside
                {"timestamp": [2.5, None], "text": "to the end"}],  # an open end runs to the duration
    "v2.json": [{"start": "00:00:10.5", "end": "00:00:11.0", "line": "srt line"},  # offset 10 s: (0.25, 1.25)
                {"start": "00:00:12.9", "end": "00:00:13.0", "line": "late"}],  # (2.45, 3.45): after frame 2.0
}


@pytest.fixture(scope="module")
def lvb(tmp_path_factory):
    root = tmp_path_factory.mktemp("lvb")
    (root / "videos").mkdir()
    (root / "subtitles").mkdir()
    write_video(str(root / "videos/v1.mp4"), make_frames(48, 64, 64), fps=8)  # 6 s
    write_video(str(root / "videos/v2.mp4"), make_frames(24, 64, 64), fps=8)  # 3 s
    for name, lines in SUBTITLES.items():
        (root / "subtitles" / name).write_text(json.dumps(lines))
    rows = [{"id": qid, "video_path": video, "subtitle_path": video.replace(".mp4", ".json"),
             "duration": 6.0 if video == "v1.mp4" else 3.0, "duration_group": group, "question_category": category,
             "question": f"What about {qid}?", "candidates": candidates, "correct_choice": correct,
             "starting_timestamp_for_subtitles": 0 if video == "v1.mp4" else 10}
            for qid, video, group, category, candidates, correct, _ in LVB_ROWS]
    (root / "lvb_val.json").write_text(json.dumps(rows))
    return root


def test_lvb_frames_and_subtitles(lvb):
    frames = load_frames(str(lvb / "videos/v1.mp4"), FrameSpec(16, sampling="longvideobench", duration=6.0))
    # n = min(16, int(6.0)) = 6 frames; step int(int(6.0 * 8) / 6) = 8
    assert frames.indices == [0, 8, 16, 24, 32, 40] and frames_of(frames.array) == frames.indices
    longer = load_frames(str(lvb / "videos/v2.mp4"), FrameSpec(4, sampling="longvideobench", duration=5.0))
    assert longer.indices == [0, 10, 20, 23]  # an annotation past the file's end: clamped to its last frame
    assert longvideobench.kept_subtitles(SUBTITLES["v1.json"], [0, 1, 2, 3, 4, 5], 0, 6.0) == ["hello", "to the end"]
    assert longvideobench.kept_subtitles(SUBTITLES["v2.json"], [0, 1, 2], 10, 3.0) == ["srt line"]


def test_lvb_published_prompts():
    # LongVideoBench@fc3c553 longvideobench_dataset.py: the inputs' text parts (here joined by newlines)
    assert longvideobench.build_prompt("What moves?", ["left", "right"], ["hi"], "official") == (
        "hi\nQuestion: What moves?\nA. left\nB. right\nAnswer with the option's letter from the given choices directly.")
    # lmms-eval@75571cf longvideobench/utils.py longvideobench_doc_to_text, longvideobench_val_v.yaml post_prompt
    assert longvideobench.build_prompt("What moves?", ["left", "right"], [], "lmms-eval") == (
        "What moves?\nA. left\nB. right\nAnswer with the option's letter from the given choices directly.\n")
    assert longvideobench._candidates({"option0": "x", "option1": "y", "option2": "N/A", "option3": "N/A"}) == ["x", "y"]


def test_lvb_golden(lvb, tmp_path):
    replies = {f"What about {row[0]}?": row[6] for row in LVB_ROWS}
    seen = {}

    def script(query):
        question = next(q for q in replies if q in query.prompt)
        seen[question] = query
        return replies[question]

    summary = evaluate(["longvideobench", "--data-dir", str(lvb), "--subtitles", "--out", str(tmp_path / "o")],
                       Scripted(script))
    r = summary["results"]
    guess = random.Random("q3").choice("ABCD")  # the published random guess, seeded by the item id
    q3 = guess == "C"
    assert r["overall"]["correct"] == 2 + q3 and r["overall"]["total"] == 4
    assert r["duration_group"] == {"15": {"accuracy": 100.0, "correct": 2, "total": 2},
                                   "60": {"accuracy": 50.0 * q3, "correct": int(q3), "total": 2}}
    assert r["question_category"]["S2E"] == {"accuracy": 50.0, "correct": 1, "total": 2}
    assert r["random_guesses"] == 1
    first = seen["What about q1?"]
    assert first.prompt.startswith("hello\nto the end\nQuestion: What about q1?\nA. left\n")
    assert first.frames.sampling == "longvideobench" and first.frames.duration == 6.0 and first.max_new_tokens == 32
    assert seen["What about q2?"].prompt.startswith("srt line\nQuestion: ")
    assert summary["config"]["protocol"]["subtitles"] is True and summary["config"]["protocol"]["num_frames"] == 16


def test_lvb_and_mlvu_through_an_endpoint(lvb, mlvu_data, server, tmp_path):
    endpoint = ["--endpoint", server.url, "--endpoint-model", "m", "--no-progress"]
    assert main(["eval", "longvideobench", "--data-dir", str(lvb), "--out", str(tmp_path / "lvb")] + endpoint) == 0
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "lvb/predictions.jsonl").read_text().splitlines())}
    assert records["q1"]["predictions"] == ["frames=6"] and records["q2"]["predictions"] == ["frames=3"]  # int(duration)
    assert records["q1"]["model_info"][0]["frame_indices"] == [0, 8, 16, 24, 32, 40]
    assert main(["eval", "mlvu", "--json-dir", str(mlvu_data / "json"), "--video-root", str(mlvu_data / "video"),
                 "--num-frames", "4", "--out", str(tmp_path / "mlvu")] + endpoint) == 0
    records = [json.loads(l) for l in (tmp_path / "mlvu/predictions.jsonl").read_text().splitlines()]
    assert all(r["predictions"] == ["A) first"] and r["queries"][0]["prefix"] == "Best option:(" for r in records)
    assert records[0]["model_info"][0]["frame_indices"] == window_indices(4, 23)


def test_lvb_bad_input(lvb, tmp_path, capsys):
    flags = ["eval", "longvideobench", "--endpoint", "http://x/v1", "--endpoint-model", "m", "--out", str(tmp_path)]
    assert main(flags + ["--data-dir", str(tmp_path)]) == 2
    assert "lvb_val.json not found" in capsys.readouterr().err
    (tmp_path / "lvb_val.json").write_text(json.dumps([{"id": "x", "video_path": "v1.mp4"}]))
    assert main(flags + ["--data-dir", str(tmp_path)]) == 2
    assert "not a LongVideoBench annotation file" in capsys.readouterr().err


# ---- MLVU ----------------------------------------------------------------------------------------

MLVU_DATA = {
    "4_count.json": [{"video": "c1.mp4", "duration": 100.0, "question": "How many?", "candidates": ["2", "1", "5", "4"],
                      "answer": "1", "question_type": "count"},
                     {"video": "c1.mp4", "duration": 100.0, "question": "How many cups?",
                      "candidates": ["2", "1", "5", "4"], "answer": "4", "question_type": "count"}],
    "3_ego.json": [{"video": "e1.mp4", "duration": 700.0, "question": "Which way?", "candidates": ["right", "left"],
                    "answer": "left", "question_type": "ego"}],
}
MLVU_REPLIES = {"How many?": "B) 1", "How many cups?": "D.", "Which way?": " B"}  # right, wrong ("D." != "D"), right


@pytest.fixture(scope="module")
def mlvu_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlvu")
    (root / "json").mkdir()
    for name, rows in MLVU_DATA.items():
        (root / "json" / name).write_text(json.dumps(rows))
    (root / "video/4_count").mkdir(parents=True)  # the json file's stem ...
    (root / "video/ego").mkdir(parents=True)  # ... or the task's name
    write_video(str(root / "video/4_count/c1.mp4"), make_frames(24, 64, 64), fps=8)
    write_video(str(root / "video/ego/e1.mp4"), make_frames(24, 64, 64), fps=8)
    return root


def test_mlvu_check_answer():
    # JUNJIE99/MLVU@fd060c1 evaluation/models/videochat2/choice_bench.py check_ans
    right = ["A) x", "A", " A) x\nbecause", "A)"]
    wrong = ["A.", "B) x", "(A) x", "", "a"]
    assert all(mlvu.check_answer(p, "(A) x") for p in right)
    assert not any(mlvu.check_answer(p, "(A) x") for p in wrong)


def test_mlvu_golden(mlvu_data, tmp_path):
    seen = []

    def script(query):
        seen.append(query)
        return next(r for q, r in MLVU_REPLIES.items() if f"Question: {q}\n" in query.prompt)

    summary = evaluate(["mlvu", "--json-dir", str(mlvu_data / "json"), "--video-root", str(mlvu_data / "video"),
                        "--out", str(tmp_path / "o")], Scripted(script))
    r = summary["results"]
    assert r["tasks"] == {"ego": {"accuracy": 100.0, "correct": 1, "total": 1},
                          "count": {"accuracy": 50.0, "correct": 1, "total": 2}}
    assert r["m_avg"] == 75.0 and r["overall"]["accuracy"] == pytest.approx(200 / 3)
    assert r["duration"] == {"< 3 min": {"accuracy": 50.0, "correct": 1, "total": 2},
                             "10-30 min": {"accuracy": 100.0, "correct": 1, "total": 1}}
    query = next(q for q in seen if "How many?" in q.prompt)
    # choice_bench.py (VideoChat2): system, qa_template, question_prompt, answer_prompt
    assert query.prompt == ("Carefully watch this video and pay attention to every detail. Based on your observations, "
                            "select the best option that accurately addresses the question.\nQuestion: How many?\n"
                            "Options:\n(A) 2\n(B) 1\n(C) 5\n(D) 4\nOnly give the best option.")
    assert query.prefix == "Best option:(" and query.max_new_tokens == 100 and query.frames.num_frames == 16
    frames = load_frames(query.video, query.frames)
    assert frames_of(frames.array) == window_indices(16, 23)  # 16 segment middles of the 24-frame clip


def test_mlvu_bad_input(mlvu_data, tmp_path, capsys):
    flags = ["eval", "mlvu", "--endpoint", "http://x/v1", "--endpoint-model", "m", "--out", str(tmp_path)]
    assert main(flags + ["--json-dir", str(mlvu_data / "json"), "--video-root", str(tmp_path)]) == 2
    assert "check --video-root" in capsys.readouterr().err
    assert main(flags + ["--json-dir", str(mlvu_data / "json"), "--video-root", str(mlvu_data), "--tasks", "sports"]) == 2
    assert "unknown MLVU task 'sports'" in capsys.readouterr().err
