"""The gallery's data side: result folders of several benchmarks read into rows, joined across
runs, filtered and sorted as the app shows them; frames decoded at the recorded indices; nothing
written into a result folder; one-line errors for wrong folders."""

import json

import pytest

from aurora.errors import ConfigError
from aurora.gallery import app
from aurora.gallery.runs import join, load_runs, select, tasks
from tests.eval_fixtures.helpers import frames_of
from tests.gallery_fixtures import FRAMES, RUN_A, RUN_B, TRUTH, snapshot, synth_folder, videomme_runs
from tests.test_eval_mmbench import reply, write_tsv


@pytest.fixture
def folders(media, tmp_path):
    return videomme_runs(media, tmp_path)


def test_two_runs_filters_and_sorting(folders):
    before = snapshot(folders)
    runs = load_runs([str(f) for f in folders])
    right_a = {q for q in TRUTH if RUN_A[q] == TRUTH[q]["answer"]}
    right_b = {q for q in TRUTH if RUN_B[q] == TRUTH[q]["answer"]}
    assert [r.name for r in runs] == ["run-a", "run-b"]
    assert {k for k, r in runs[0].rows.items() if r.correct} == right_a
    assert runs[0].settings["model"] == "run-a" and "Video-MME" in runs[0].settings["protocol"]
    assert runs[0].headline.startswith("accuracy ")
    items = join(runs)
    assert [i.key for i in items] == list(TRUTH)  # item order

    def keys(**filters):
        return [i.key for i in select(items, **filters)]

    disagree = [q for q in TRUTH if (q in right_a) != (q in right_b)]
    assert keys(outcome="runs disagree") == disagree and len(disagree) == 3
    assert keys(outcome="right in any run") == [q for q in TRUTH if q in right_a | right_b]
    assert keys(outcome="wrong in any run") == [q for q in TRUTH if q not in right_a & right_b]
    assert keys(task="Counting Problem") == [q for q in TRUTH if TRUTH[q]["task_type"] == "Counting Problem"]
    assert keys(search="REFEREE") == ["002-3"]  # case-insensitive, over questions and predictions
    assert keys(sort="score difference") == disagree + [q for q in TRUTH if q not in disagree]
    assert "Counting Problem" in tasks(items)
    row = items[0].rows[0]
    assert row.frame_indices == FRAMES and row.reference == TRUTH["001-1"]["answer"] and row.verdict == "read: C"

    frames = app.frames_for(items[0])  # the recorded frames, decoded again
    assert [caption for _, caption in frames] == [f"frame {i}" for i in FRAMES]
    assert frames_of([image for image, _ in frames]) == FRAMES
    page = app.items_html(runs, select(items, outcome="runs disagree"), len(items))
    assert "3 of 6 items" in page and page.count("class='gallery-item gallery-disagree'") == 3 and page.count("gallery-wrong") == 3
    assert app.runs_html(runs).count("class='gallery-run'") == 2
    assert snapshot(folders) == before  # read only


def test_every_kind_of_folder(media, tmp_path):
    tsv = tmp_path / "MMBench_DEV_EN.tsv"
    write_tsv(tsv)
    from tests.eval_fixtures.helpers import Scripted, evaluate

    evaluate(["mmbench", "--data", str(tsv), "--out", str(tmp_path / "mmb")], Scripted(reply))
    synth = synth_folder(media, tmp_path)
    before = snapshot([tmp_path / "mmb", synth])
    mmb, syn = load_runs([str(tmp_path / "mmb"), str(synth)])
    q1 = mmb.rows["1"]
    assert q1.correct is False and q1.reference == "A. cat" and q1.media.endswith("1.png")
    assert q1.prediction.splitlines()[3] == "[3] C" and "rotation 3: ✗ read C (rule), answer B" in q1.verdict
    assert app.frames_for(join([mmb])[0])[0][1] == "image 0"  # an image: one frame
    assert syn.name == "synth@0.5" and syn.settings["token kept ratio"] == 0.5 and syn.headline == "attribute accuracy 75.0"
    clip0 = syn.rows["clip0"]
    assert clip0.correct is False and clip0.score == 0.5 and clip0.verdict == "✓ camera · ✗ background"
    assert clip0.media.endswith("split/clip0.mp4") and clip0.question == "Describe the video." and clip0.task == "1 objects"
    assert snapshot([tmp_path / "mmb", synth]) == before


def test_judged_runs_show_verdicts(media, server, tmp_path):
    from tests.eval_fixtures.helpers import FIXTURES, VIDEOQA_PREDICTIONS, Scripted, evaluate, judge_flags

    evaluate(["videoqa", "--questions", str(FIXTURES / "videoqa/test_q.json"), "--answers",
              str(FIXTURES / "videoqa/test_a.json"), "--video-dir", str(media / "videoqa"), "--out", str(tmp_path / "qa")]
             + judge_flags(server, tmp_path / "c.sqlite"), Scripted(lambda q: VIDEOQA_PREDICTIONS[q.prompt]))
    (run,) = load_runs([str(tmp_path / "qa")])
    assert run.settings["judge"] == "rules" and run.headline == "accuracy 60.00, score 2.60"
    q0, q2, q3 = run.rows["0"], run.rows["2"], run.rows["3"]
    assert q0.correct is True and q0.score == 5 and q0.reference == "red" and "judge: {'pred': 'yes', 'score': 5}" in q0.verdict
    assert q3.correct is False  # the judge said no ("sitting" for "running")
    assert q2.correct is None and "unparsable reply after 3 attempts" in q2.verdict  # a failed verdict, shown as such


def test_wrong_folders_are_one_line_errors(tmp_path, capsys):
    from aurora.cli import main

    assert main(["gallery", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["gallery", str(tmp_path / "empty")]) == 2
    assert "not an `aurora eval` result folder" in capsys.readouterr().err
    (tmp_path / "started").mkdir()
    (tmp_path / "started/config.json").write_text(json.dumps({"benchmark": "videomme"}))
    with pytest.raises(ConfigError, match="no per-item records"):
        load_runs([str(tmp_path / "started")])


def test_a_taken_port_is_one_line(folders, capsys):
    import socket

    from aurora.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["gallery", str(folders[0]), "--port", str(port)]) == 2
    assert "choose another --port" in capsys.readouterr().err
