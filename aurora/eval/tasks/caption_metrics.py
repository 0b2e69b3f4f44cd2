"""Reference-based captioning metrics (BLEU-4, METEOR, ROUGE-L, CIDEr-D) on any captioned video split.

Data: JSON list or JSONL of {"id"?, "video", "captions": [...]} (or "caption": "..."), video paths
relative to `--video-dir` (default: the data file's folder). The model captions every video with
`--prompt`; the metrics are computed once over the whole split (`aurora.eval.metrics`).
"""

from __future__ import annotations

from pathlib import Path

from aurora.errors import ConfigError
from aurora.eval.metrics import METRICS, caption_scores, require_java
from aurora.eval.records import read_json_or_jsonl
from aurora.eval.task import Query, require_videos

SUMMARY = "BLEU-4 / METEOR / ROUGE-L / CIDEr-D (pycocoevalcap, PTB tokenised, corpus level)"
JUDGED = False
DEFAULT_PROMPT = "Describe the video in detail."


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="JSON/JSONL of {id?, video, captions: [...]}")
    p.add_argument("--video-dir", dest="video_dir", help="base folder of relative video paths (default: the data file's folder)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"captioning prompt (default: {DEFAULT_PROMPT!r})")


def load_items(args) -> list[dict]:
    require_java()  # fail before any model work, not after it
    path = Path(args.data)
    rows = read_json_or_jsonl(path)
    base = Path(args.video_dir) if args.video_dir else path.parent
    items = []
    for i, row in enumerate(rows):
        refs = row.get("captions") or ([row["caption"]] if row.get("caption") else [])
        if not refs:
            raise ConfigError(f"{path}: item {i} has no reference caption")
        video = base / row["video"]
        items.append({"id": str(row.get("id", i)), "video_name": row["video"],
                      "video": str(video) if video.exists() else None, "references": list(refs)})
    require_videos(items, "caption")
    return items


def protocol(args) -> dict:
    return {"prompt_set": f"one prompt: {args.prompt!r}", "prompt": args.prompt, "metrics": list(METRICS),
            "tokenizer": "PTB (Stanford CoreNLP 3.4.1 via pycocoevalcap), corpus-level scores"}


def queries(item, args) -> list[Query]:
    return [Query(item["video"], args.prompt)]


def score(item, answers, judge, args) -> dict:
    return {"references": item["references"], "caption": answers[0]}


def aggregate(records, args) -> dict:
    scores = caption_scores({r["id"]: r["references"] for r in records}, {r["id"]: r["caption"] for r in records})
    return {"metrics": {m: scores[m] for m in METRICS}, "items": len(records),
            "per_item_CIDEr-D": scores["per_item_CIDEr-D"]}


def table(results) -> str:
    metrics = results["metrics"]
    return ("| " + " | ".join(METRICS) + " | items |\n" + "|---" * (len(METRICS) + 1) + "|\n"
            + "| " + " | ".join(f"{100 * metrics[m]:.2f}" for m in METRICS) + f" | {results['items']} |\n")
