"""MMBench on a TSV in the release's layout (written here): published prompts, can_infer's rules,
CircularEval (a question right in 3 of 4 rotations scores 0), the optional judge fallback through a
real HTTP judge, and an image benchmark run against a video model (one frame)."""

import base64
import csv
import io
import json
import random

import pytest
from PIL import Image

from aurora.eval.tasks import mmbench
from tests.eval_fixtures.helpers import Scripted, evaluate, judge_flags, main

COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "split", "image"]


def png_base64(colour) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def rotations(g_index: int, options: list[str], right: str) -> list[dict]:
    """The TSV rows of one question: rotation r shifts the options by r (index + r * 1e6)."""
    rows = []
    for r in range(len(options)):
        shifted = options[r:] + options[:r]
        row = {"index": g_index + r * 1_000_000, "answer": "ABCD"[shifted.index(right)]}
        row.update({letter: text for letter, text in zip("ABCD", shifted)})
        rows.append(row)
    return rows


# question -> (options, right option, hint, l2-category, replies per rotation)
QUESTIONS = {
    1: ("What animal is shown?", ["cat", "dog", "bird", "fish"], "cat", None, "coarse_perception",
        ["A", "D", "C", "C"]),  # rotations 0-2 right, rotation 3 (answer B) wrong
    2: ("What colour is the sky?", ["blue", "green", "red", "white"], "blue", None, "coarse_perception",
        ["A", "The answer is D", "(C) blue", "blue"]),  # letter, 'answer is', '(C)', option text: all right
    3: ("Is it day?", ["yes", "no"], "yes", "It is noon.", "logic_reasoning",
        ["A", "I pick the bright one #judge=B"]),  # rotation 1 only a judge can match (B: right)
    4: ("Is it night?", ["yes", "no"], "no", None, "logic_reasoning",
        ["hmm, hard to say", "A. no"]),  # the judge never names an option: a seeded random draw
}


def write_tsv(path) -> None:
    image = png_base64((200, 30, 30))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS, delimiter="\t")
        writer.writeheader()
        for g, (question, options, right, hint, l2, _) in QUESTIONS.items():
            for r, row in enumerate(rotations(g, options, right)):
                writer.writerow({**{c: "" for c in COLUMNS}, **row, "question": question, "hint": hint or "nan",
                                 "category": f"cat{g % 2}", "l2-category": l2, "split": "dev",
                                 "image": image if r == 0 else str(g)})  # rotations refer to the main row's image


def reply(query) -> str:
    for g, (question, options, right, _hint, _l2, replies) in QUESTIONS.items():
        if f"Question: {question}\n" in query.prompt:
            first = query.prompt.split("Options:\nA. ")[1].split("\n")[0]
            return replies[options.index(first)]  # rotation r starts with option r
    raise AssertionError(query.prompt)


@pytest.fixture
def tsv(tmp_path):
    path = tmp_path / "MMBench_DEV_EN_V11.tsv"
    write_tsv(path)
    return path


def test_published_prompts():
    row = {"question": "Is it day?", "hint": "It is noon.", "options": {"A": "yes", "B": "no"}}
    # VLMEvalKit@e8e78f0 vlmeval/dataset/image_mcq.py ImageMCQDataset.build_prompt
    assert mmbench.build_prompt(row, "vlmevalkit", "en") == (
        "Hint: It is noon.\nQuestion: Is it day?\nOptions:\nA. yes\nB. no\n"
        "Please select the correct answer from the options above. \n")
    # lmms-eval@75571cf lmms_eval/tasks/mmbench/en_utils.py mmbench_doc_to_text + _default_template_mmbench_en_yaml
    assert mmbench.build_prompt(row, "lmms-eval", "en") == (
        "It is noon. Is it day? There are several options:\nA. yes\nB. no\n\n"
        "Answer with the option's letter from the given choices directly.")
    assert mmbench.build_prompt({**row, "hint": None}, "lmms-eval", "cn") == (
        "Is it day? 有如下几个选项：\nA. yes\nB. no\n\n请直接使用所提供的选项字母作为答案回答。")
    # VLMEvalKit multiple_choice.py build_prompt (the judge), its opening and its last example
    prompt = mmbench.judge_prompt("Is it day", {"A": "yes", "B": "no"}, "sunny")
    assert prompt.startswith("You are an AI assistant who will help me to match an answer with several options "
                             "of a single-choice question. ")
    assert prompt.endswith("Example 3: \nQuestion: Is it day?\nOptions: There are several options: \nA. yes\nB. no\n"
                           "\nAnswer: sunny\nYour output: ")
    assert mmbench.judge_prompt("图中是什么", {"A": "猫"}, "猫").endswith("问题: 图中是什么?\n选项: There are several options: \n"
                                                                      "A. 猫\n\n答案: 猫\n输出: ")


def test_can_infer_rules():
    choices = {"A": "kitten", "B": "a dog", "C": "two birds", "D": "fish"}
    cases = {"B": "B", "(C)": "C", "**D**": "D", "The answer is C.": "C", "B or C": None,
             "A cat sits on the mat, as far as I can see": None,  # 'A' early in a long reply is an article
             "It shows a dog": "B",  # no letter: the one option text inside the reply
             "Cannot determine the answer": "Z", "Z": "Z", "I think the correct answer is **B** here, see": "B",
             "fish and a dog": None}  # two option texts: no match
    assert {text: mmbench.infer(text, dict(choices)) for text in cases} == cases


def test_circular_eval_golden(tsv, tmp_path):
    summary = evaluate(["mmbench", "--data", str(tsv), "--out", str(tmp_path / "rules")], Scripted(reply))
    results = summary["results"]
    # exact matching: Q1 fails (rotation 3 wrong), Q2 passes, Q3 and Q4 have an unmatched rotation -> fail
    assert results["overall"] == {"accuracy": 25.0, "correct": 1, "total": 4}
    assert results["l2_category"] == {"CP": {"accuracy": 50.0, "correct": 1, "total": 2},
                                      "LR": {"accuracy": 0.0, "correct": 0, "total": 2}}
    assert results["category"]["cat0"] == {"accuracy": 50.0, "correct": 1, "total": 2}
    config = summary["config"]["protocol"]
    assert config["version"] == "v1.1" and config["language"] == "en" and "VLMEvalKit" in config["source"]
    records = {json.loads(l)["id"]: json.loads(l) for l in (tmp_path / "rules/predictions.jsonl").read_text().splitlines()}
    q1 = records["1"]
    assert [d["correct"] for d in q1["rotations"]] == [True, True, True, False] and q1["hit"] is False
    assert [d["index"] for d in q1["rotations"]] == [1, 1000001, 2000001, 3000001]
    assert len(q1["queries"]) == 4 and q1["queries"][0]["video"].endswith("1.png")  # one image per question
    assert records["2"]["queries"][0]["video"].endswith("2.png")  # a reference cell resolved to the main image


def test_judge_fallback_golden(tsv, tmp_path, server):
    summary = evaluate(["mmbench", "--data", str(tsv), "--out", str(tmp_path / "judged")]
                       + judge_flags(server, tmp_path / "cache.sqlite"), Scripted(reply))
    # Q3 rotation 1: the judge reads "B", right -> Q3 passes. Q4 rotation 0: three unreadable replies,
    # then the published random option-or-Z, drawn from a generator seeded by the row index (4).
    drawn = random.Random(4).choice(["A", "B", "Z"])
    q4 = drawn == "B"  # rotation 0 of "Is it night?" has answer B ("no")
    assert summary["results"]["overall"]["correct"] == 2 + q4
    assert summary["results"]["judged_rotations"] == 1 and summary["results"]["random_rotations"] == 1
    records = {json.loads(l)["id"]: json.loads(l) for l in (tmp_path / "judged/predictions.jsonl").read_text().splitlines()}
    q3, q4_record = records["3"]["rotations"][1], records["4"]["rotations"][0]
    assert q3["matched"] == "B" and q3["matched_by"] == "judge" and q3["judge"]["replies"] == ["B"]
    assert q4_record["matched"] == drawn and len(q4_record["judge"]["replies"]) == 3
    # Q1's rule-matched wrong rotation fails it before any judge call
    assert all(d["judge"] is None for d in records["1"]["rotations"])
    assert summary["config"]["judge"]["model"] == "rules"


def test_image_benchmark_on_a_video_model(tsv, tmp_path, server, xtuner_ckpt, capsys):
    code = main(["eval", "mmbench", "--endpoint", server.url, "--endpoint-model", "m", "--endpoint-media", "video",
                 "--data", str(tsv), "--limit", "1", "--out", str(tmp_path / "e"), "--no-progress"])
    assert code == 0
    record = json.loads((tmp_path / "e/predictions.jsonl").read_text().splitlines()[0])
    assert record["predictions"] == ["frames=1"] * 4  # the image as one image part, never a video
    code = main(["eval", "mmbench", "--model", str(xtuner_ckpt), "--data", str(tsv), "--limit", "1",
                 "--max-new-tokens", "2", "--out", str(tmp_path / "a"), "--no-progress"])
    assert code == 0 and "CircularEval accuracy" in capsys.readouterr().out
    record = json.loads((tmp_path / "a/predictions.jsonl").read_text().splitlines()[0])
    assert [info["frame_indices"] for info in record["model_info"]] == [[0]] * 4


def test_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    assert main(["eval", "mmbench", "--endpoint", "http://x/v1", "--endpoint-model", "m", "--data", str(bad),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not an MMBench TSV" in capsys.readouterr().err
    assert main(["eval", "mmbench", "--endpoint", "http://x/v1", "--endpoint-model", "m", "--data",
                 str(tmp_path / "none.tsv"), "--out", str(tmp_path / "o")]) == 2
    assert "none.tsv not found" in capsys.readouterr().err


def test_killed_resumed_and_sharded_runs_match(tsv, tmp_path, server, monkeypatch):
    flags = ["mmbench", "--data", str(tsv), "--batch-size", "1"] + judge_flags(server, tmp_path / "cache.sqlite")
    whole = evaluate(flags + ["--out", str(tmp_path / "whole")], Scripted(reply))
    out = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="simulated kill"):  # questions 1 and 2 (4 rotations each) finish
        evaluate(flags + ["--out", str(out)], Scripted(reply, fail_after=9))
    again = Scripted(reply)
    resumed = evaluate(flags + ["--out", str(out), "--resume"], again)
    assert again.answered == 4 and resumed["results"] == whole["results"]  # questions 3 and 4: 2 rotations each

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert evaluate(flags + ["--out", str(tmp_path / "sharded")], Scripted(reply)) is None  # questions 2 and 4
    monkeypatch.setenv("RANK", "0")
    merged = evaluate(flags + ["--out", str(tmp_path / "sharded")], Scripted(reply))
    assert merged["results"] == whole["results"] and merged["config"]["world_size"] == 2
