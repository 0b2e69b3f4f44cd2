"""Captioning metrics through pycocoevalcap, as the COCO caption evaluation computes them.

Captions are PTB-tokenised (Stanford CoreNLP, Java; lower-cased, punctuation removed) and scored at
corpus level: BLEU-4 (pycocoevalcap's Bleu(4), "closest" reference length), METEOR 1.5 (Java),
ROUGE-L and CIDEr-D (pycocoevalcap's Cider: sigma 6, clipped counts, document frequencies over the
whole split at once, so one split must be scored in one call — never averaged over shards).
Java is required; without it this fails with an install hint rather than skipping a metric.
"""

from __future__ import annotations

import shutil

from aurora.errors import ConfigError

METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")


def require_java() -> None:
    if shutil.which("java") is None:
        raise ConfigError("caption metrics need Java for the PTB tokenizer and METEOR: "
                          "install it, e.g. apt-get install -y default-jre-headless")


def caption_scores(references: dict[str, list[str]], predictions: dict[str, str]) -> dict:
    """Corpus-level BLEU-4, METEOR, ROUGE-L and CIDEr-D of `predictions` (one caption per id)
    against `references` (one or more captions per id), plus per-item CIDEr-D."""
    if set(references) != set(predictions):
        raise ConfigError("caption metrics need exactly one prediction for every id with references")
    if not references:
        raise ConfigError("no captions to score")
    if any(not refs for refs in references.values()):
        raise ConfigError("every item needs at least one reference caption")
    require_java()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ids = list(references)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in references[i]] for i in ids})
    res = tokenizer.tokenize({i: [{"caption": predictions[i]}] for i in ids})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor = Meteor()
    try:
        meteor_score, _ = meteor.compute_score(gts, res)
    finally:
        _close_meteor(meteor)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, cider_each = Cider().compute_score(gts, res)
    return {"BLEU-4": float(bleu[3]), "METEOR": float(meteor_score), "ROUGE-L": float(rouge),
            "CIDEr-D": float(cider), "per_item_CIDEr-D": {i: float(s) for i, s in zip(ids, cider_each)}}


def _close_meteor(meteor) -> None:
    """Stop METEOR's Java process now rather than at interpreter exit."""
    process = getattr(meteor, "meteor_p", None)
    if process is None:
        return
    with meteor.lock:
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream:
                stream.close()
        process.kill()
        process.wait()
