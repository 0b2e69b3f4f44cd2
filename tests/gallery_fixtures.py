"""Result folders for the gallery tests, made by `aurora eval` itself (two Video-MME runs that
disagree on known items, one MMBench run) and a `synth` folder in its published layout."""

from __future__ import annotations

import json
from pathlib import Path

from aurora.eval.predictors import Answer
from tests.eval_fixtures.helpers import FIXTURES, Scripted, evaluate

TRUTH = {r["question_id"]: r for r in json.loads((FIXTURES / "videomme/videomme.json").read_text())}
RUN_A = {"001-1": "C", "001-2": "B", "001-3": "B", "002-1": "D", "002-2": "B", "002-3": "C"}
RUN_B = {"001-1": "C", "001-2": "A", "001-3": "A", "002-1": "D", "002-2": "B", "002-3": "A"}
FRAMES = [0, 5, 10]  # the frame indices run A reports for every item


class WithFrames(Scripted):
    """A scripted model that also reports the frames it saw, as AuroraPredictor does."""

    def answer(self, queries):
        return [Answer(a.text, a.seconds, {"frame_indices": FRAMES}) for a in super().answer(queries)]


def videomme_runs(media: Path, root: Path) -> list[Path]:
    from aurora.eval.tasks.videomme import build_prompt

    by_prompt = {build_prompt(r["question"], r["options"]): qid for qid, r in TRUTH.items()}
    folders = []
    for name, answers, model in (("run-a", RUN_A, WithFrames), ("run-b", RUN_B, Scripted)):
        out = root / name
        evaluate(["videomme", "--data", str(FIXTURES / "videomme/videomme.json"), "--video-dir", str(media / "videomme"),
                  "--out", str(out)], model(lambda q, answers=answers: answers[by_prompt[q.prompt]], name=name))
        folders.append(out)
    return folders


def synth_folder(media: Path, root: Path) -> Path:
    """`aurora eval synth`'s layout: ratio_<r>.jsonl lines, summary.json, and the split it read."""
    split = root / "split"
    split.mkdir(parents=True)
    clips = [{"id": "clip0", "video": "clip0.mp4", "attributes": {"objects": [{}]}},
             {"id": "clip1", "video": "clip1.mp4", "attributes": {"objects": [{}, {}]}}]
    (split / "test.jsonl").write_text("".join(json.dumps(c) + "\n" for c in clips))
    for clip in clips:
        (split / clip["video"]).write_bytes((media / "videoqa/clip_a.mp4").read_bytes())
    out = root / "synth"
    out.mkdir()
    scores = [{"camera": 1.0, "background": 0.0, "overall": 0.5}, {"camera": 1.0, "background": 1.0, "overall": 1.0}]
    lines = [{"id": c["id"], "ratio": 0.5, "caption": f"caption of {c['id']}", "reference": "a red ball",
              "scores": s, "seconds_per_clip": 0.1, "visual_tokens_per_frame": 9, "generated_tokens": 4}
             for c, s in zip(clips, scores)]
    (out / "ratio_0.5.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    (out / "summary.json").write_text(json.dumps({
        "benchmark": "synth", "data": str(split / "test.jsonl"), "model": "tiny", "prompt": "Describe the video.",
        "num_frames": 4, "results": {"0.5": {"overall": 0.75, "n": 2}}}))
    return out


def snapshot(folders: list[Path]) -> dict:
    """Every file under `folders` with its size and modification time (to prove nothing changed)."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for f in folders for p in sorted(Path(f).rglob("*"))}
