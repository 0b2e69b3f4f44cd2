"""MME-RealWorld on questions in the release's JSON layout (written here): the published prompts,
the official letter extraction with its quirks, and accuracy per category, subtask, task and overall."""

import base64
import json

import pytest
from PIL import Image

from aurora.eval.tasks import mme_realworld
from tests.eval_fixtures.helpers import Scripted, evaluate, main

CHOICES = ["(A) 458", "(B) 457", "(C) 456", "(D) 455", "(E) This image doesn't feature the data."]

# (Question_id, Task, Subtask, Category, Ground truth, the model's reply)
ROWS = [
    ("Perception/Autonomous_Driving/Objects_Identify/0000", "Perception", "Autonomous_Driving", "Objects_Identify", "D", "D"),
    ("Perception/Autonomous_Driving/Objects_Identify/0001", "Perception", "Autonomous_Driving", "Objects_Identify", "B",
     "The best answer is (B)"),
    ("perception/diagram_and_table/diagram/0558", "Perception", "Diagram and Table", "diagram", "A", ""),  # "" reads A
    ("perception/remote_sensing/color/0001", "Perception", "Remote Sensing", "color/attribute", "C",
     "the picture is far too blurry for me to tell anything about what it shows"),  # long, no letter: ""
    ("perception/remote_sensing/shape/0002", "Perception", "Remote Sensing", "shape/attribute", "E", "E"),
    ("Reasoning/Monitoring/Intention/0001", "Reasoning", "Monitoring", "Intention", "C", "Best option: C"),  # reads B
    ("Reasoning/Monitoring/Intention/0002", "Reasoning", "Monitoring", "Intention", "A", "a"),  # in "(a) 458": A
]


def write_data(tmp_path, name="MME_RealWorld.json"):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    rows = []
    for i, (qid, task, subtask, category, truth, _) in enumerate(ROWS):
        Image.new("RGB", (40, 30), (10 * i, 50, 90)).save(images / "sub" / f"{i}.jpg")
        rows.append({"Question_id": qid, "Question Type": "Multiple Choice", "Image": f"sub/{i}.jpg",
                     "Text": f"What is the data of Interest in row {i}?", "Answer choices": CHOICES,
                     "Ground truth": truth, "Task": task, "Subtask": subtask, "Category": category, "Dataset": "x"})
    path = tmp_path / name
    path.write_text(json.dumps(rows, ensure_ascii=False))
    return path, images


def test_published_prompts():
    # yfzhang114/MME-RealWorld@87096fc evaluation/model_vqa_mme_real_world.py (qs + choice_prompt + test_prompt)
    assert mme_realworld.build_prompt("What is it?", ["(A) x", "(B) y"], "en") == (
        "What is it? The choices are listed below: \n(A) x\n(B) y\nSelect the best answer to the above multiple-choice "
        "question based on the image. Respond with only the letter (A, B, C, D, or E) of the correct option.\n"
        "The best answer is:")
    # evaluation/download_and_prepare_prompt.py MMERealWorld.build_prompt with SYS['MME-RealWorld-CN']
    assert mme_realworld.build_prompt("这是什么？", ["(A) x", "(B) y"], "cn") == (
        "这是什么？选项如下所示:\n(A) x\n(B) y\n根据图像选择上述多项选择题的最佳答案。只需回答正确选项的字母（A, B, C, D 或 E）。\n"
        " 最佳答案为：\nThe best answer is:")
    # lmms-eval@75571cf lmms_eval/tasks/mme_realworld/utils.py mme_realworld_doc_to_text / _cn_doc_to_text
    assert mme_realworld.build_prompt("What is it?", ["(A) x"], "en", "lmms-eval") == (
        "What is it? The choices are listed below:\n(A) x\nSelect the best answer to the above multiple-choice question "
        "based on the image. Respond with only the letter (A, B, C, D, or E) of the correct option.\nThe best answer is: ")
    assert mme_realworld.build_prompt("这是什么？", ["(A) x"], "cn", "lmms-eval") == (
        "这是什么？ 选项如下所示:\n(A) x\n根据图像选择上述多项选择题的最佳答案。只需回答正确选项的字母（A, B, C, D 或 E）。\n最佳答案为： ")


def test_extraction_quirks():
    cases = {"D": "D", "(B)": "B", "The correct answer is (E)": "E", "": "A",  # empty: in every choice -> "A"
             "Best option: C": "B", "456": "C", "a": "A",  # no letter: the choice that contains the reply
             "the picture is far too blurry for me to tell anything about what it shows": ""}
    assert {text: mme_realworld.extract_answer(text, CHOICES) for text in cases} == cases
    assert mme_realworld.category_key("Color/Attribute") == "color/attribute"


def test_golden(tmp_path):
    path, images = write_data(tmp_path)
    replies = {f"row {i}?": row[5] for i, row in enumerate(ROWS)}
    script = Scripted(lambda q: next(r for key, r in replies.items() if key in q.prompt))
    summary = evaluate(["mme-realworld", "--data", str(path), "--image-dir", str(images), "--out", str(tmp_path / "o")],
                       script)
    r = summary["results"]
    # right: rows 0 (D), 1 (B), 2 ("" -> A), 4 (E), 6 ("a" -> A); wrong: 3 (""), 5 ("B" read for C)
    assert r["overall"] == {"accuracy": pytest.approx(500 / 7), "correct": 5, "total": 7, "answered_E": 1}
    perception = r["tasks"]["Perception"]
    assert perception["correct"] == 4 and perception["total"] == 5 and perception["answered_E"] == 1
    assert perception["subtasks"]["Remote Sensing"]["categories"] == {
        "color/attribute": {"accuracy": 0.0, "correct": 0, "total": 1, "answered_E": 0},
        "shape/attribute": {"accuracy": 100.0, "correct": 1, "total": 1, "answered_E": 1}}
    assert perception["subtasks"]["Autonomous_Driving"]["accuracy"] == 100.0
    assert r["tasks"]["Reasoning"] == {"accuracy": 50.0, "correct": 1, "total": 2, "answered_E": 0, "subtasks": {
        "Monitoring": {"accuracy": 50.0, "correct": 1, "total": 2, "answered_E": 0,
                       "categories": {"intention": {"accuracy": 50.0, "correct": 1, "total": 2, "answered_E": 0}}}}}
    assert summary["config"]["protocol"]["max_new_tokens"] == 64 and summary["config"]["protocol"]["language"] == "en"
    # the reasoning split alone, Chinese by the file name
    cn, _ = write_data(tmp_path / "cn", "MME_RealWorld_CN.json")
    only = evaluate(["mme-realworld", "--data", str(cn), "--image-dir", str(images), "--tasks", "reasoning",
                     "--out", str(tmp_path / "r")], script)
    assert only["items"] == 2 and list(only["results"]["tasks"]) == ["Reasoning"]
    assert only["config"]["protocol"]["language"] == "cn"


def test_base64_release_reads_the_same(tmp_path):
    path, images = write_data(tmp_path)
    rows = []
    for i, (qid, task, subtask, category, truth, _) in enumerate(ROWS):  # the Base64 release's fields
        encoded = base64.b64encode((images / "sub" / f"{i}.jpg").read_bytes()).decode()
        rows.append({"index": i, "image": encoded, "question": f"What is the data of Interest in row {i}?",
                     "multi-choice options": CHOICES, "answer": truth, "category": f"{task}/{subtask}",
                     "l2-category": category})
    (tmp_path / "b64.json").write_text(json.dumps(rows))
    replies = {f"row {i}?": row[5] for i, row in enumerate(ROWS)}
    script = Scripted(lambda q: next(r for key, r in replies.items() if key in q.prompt))
    official = evaluate(["mme-realworld", "--data", str(path), "--image-dir", str(images), "--out", str(tmp_path / "a")],
                        script)
    encoded = evaluate(["mme-realworld", "--data", str(tmp_path / "b64.json"), "--out", str(tmp_path / "b")], script)
    assert encoded["results"] == official["results"] and encoded["items"] == len(ROWS)
    assert sorted(p.name for p in (tmp_path / "b/images").iterdir()) == sorted(f"{i}.jpg" for i in range(len(ROWS)))


def test_bad_input(tmp_path, capsys):
    path, images = write_data(tmp_path)
    flags = ["eval", "mme-realworld", "--endpoint", "http://x/v1", "--endpoint-model", "m", "--out", str(tmp_path / "o")]
    assert main(flags + ["--data", str(path), "--image-dir", str(tmp_path)]) == 2
    assert "check --image-dir" in capsys.readouterr().err
    assert main(flags + ["--data", str(path)]) == 2
    assert "pass --image-dir" in capsys.readouterr().err
    assert main(flags + ["--data", str(path), "--image-dir", str(images), "--tasks", "ocr"]) == 2
    assert "unknown MME-RealWorld task 'Ocr'" in capsys.readouterr().err
    (tmp_path / "x.json").write_text('[{"Text": "q"}]')
    assert main(flags + ["--data", str(tmp_path / "x.json"), "--image-dir", str(images)]) == 2
    assert "not an MME-RealWorld question file" in capsys.readouterr().err
