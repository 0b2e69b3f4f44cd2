"""`aurora` command line: a thin dispatcher over importable functions.

Each subcommand parses flags, calls the Python API and prints. A user mistake (AuroraError) prints
one line and exits with code 2; `--debug` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from pathlib import Path

from aurora import __version__
from aurora.argtypes import positive_float as _positive_float
from aurora.argtypes import positive_int as _positive_int
from aurora.argtypes import ratio as _ratio
from aurora.errors import AuroraError, AuroraWarning, ConfigError
from aurora.model_flags import add_generation_flags, add_load_flags, generation_kwargs, load_model

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_caption(sub) -> None:
    p = sub.add_parser("caption", help="caption a video or image (streams to stdout)")
    p.add_argument("visual", nargs="?", help="video (.mp4 .mkv .webm .avi .mov .gif) or image (.png .jpg .webp)")
    p.add_argument("--visual_input", dest="visual_alias", help=argparse.SUPPRESS)
    p.add_argument("--prompt", help="default: the model's preset ('Describe the video in detail.')")
    p.add_argument("--json", action="store_true", help="print one JSON object with the caption and its metadata")
    p.add_argument("--profile", action="store_true", help="print the time per stage to stderr")
    add_generation_flags(p, "default: preset (2048 for AuroraCap)")
    add_load_flags(p)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(run=run_caption)


def _add_chat(sub) -> None:
    p = sub.add_parser("chat", help="talk about a video or image, one question per line on stdin")
    p.add_argument("visual", nargs="?")
    p.add_argument("--visual_input", dest="visual_alias", help=argparse.SUPPRESS)
    add_generation_flags(p, "default: preset (2048 for AuroraCap)")
    add_load_flags(p)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(run=run_chat)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train or fine-tune on LLaVA-format data (CPU or `accelerate launch`)")
    p.add_argument("--config", help="YAML file of settings; flags override it")
    p.add_argument("--data", help="LLaVA-format JSON/JSONL (video or image path + conversations)")
    p.add_argument("--output-dir", dest="output_dir")
    p.add_argument("--model", help="checkpoint to start from (default: build from the config's scratch section)")
    p.add_argument("--train-parts", dest="train_parts", type=lambda s: tuple(x for x in s.split(",") if x),
                   help="comma-separated: tower,connector,language_model")
    p.add_argument("--lora-rank", dest="lora_rank", type=int)
    p.add_argument("--freeze-gates", dest="freeze_gates", action="store_true", default=None,
                   help="a mixture of LoRA experts (Awaker): keep its gates as they are")
    p.add_argument("--balance-loss", dest="balance_loss", type=float,
                   help="a mixture of LoRA experts: weight of the load-balancing loss (default 0)")
    p.add_argument("--token-kept-ratio", dest="token_kept_ratio", type=_ratio)
    p.add_argument("--num-frames", dest="num_frames", type=_positive_int, help="default: the model's preset")
    p.add_argument("--batch-size", dest="batch_size", type=_positive_int)
    p.add_argument("--grad-accum", dest="grad_accum", type=_positive_int)
    p.add_argument("--lr", type=_positive_float)
    p.add_argument("--max-steps", dest="max_steps", type=_positive_int)
    p.add_argument("--warmup-steps", dest="warmup_steps", type=int)
    p.add_argument("--save-every", dest="save_every", type=_positive_int)
    p.add_argument("--log-every", dest="log_every", type=_positive_int)
    p.add_argument("--mixed-precision", dest="mixed_precision", choices=("no", "bf16", "fp16"))
    p.add_argument("--loss-normalisation", dest="loss_normalisation", choices=("token", "sample"),
                   help="average the loss over answer tokens (default) or per answer, then over answers")
    p.add_argument("--objective", choices=("caption", "attributes"),
                   help="caption (default) or attributes: the tower alone on `aurora synth` ground truth")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(run=run_train)


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="generate synthetic clips with exact ground truth (train/val/test)")
    p.add_argument("--out", default="data/synth")
    p.add_argument("--num-clips", dest="num_clips", type=_positive_int, default=5000)
    p.add_argument("--size", type=_positive_int, default=64, help="frame size in pixels (even, >= 32)")
    p.add_argument("--frames", type=_positive_int, help="frames per clip (default 16; 32 with --long)")
    p.add_argument("--long", action="store_true",
                   help="the long split: 32-64 frames, objects appear, disappear, change colour or stop at known times")
    p.add_argument("--fps", type=_positive_float, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", default="0.8,0.1,0.1", help="train,val,test fractions")
    p.add_argument("--workers", type=_positive_int, default=2)
    p.add_argument("--tasks", default="detailed",
                   help="caption types the training conversations ask for, with weights, e.g. "
                        "detailed=0.5,camera=0.2,main_object=0.3 (types: camera, background, main_object, short, detailed)")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(run=run_synth)


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="write a checkpoint in another layout of its family (AuroraCap: hf, xtuner), or fine-tunes of one model averaged")
    p.add_argument("src", help="checkpoint directory or hub id")
    p.add_argument("dst", help="output directory (must not exist or be empty)")
    p.add_argument("--to", default="hf", help="a layout of the model's family (AuroraCap: hf (default), xtuner; "
                                             "PLLaVA: xtuner, pllava-weights)")
    p.add_argument("--adapter", help="an adapter directory applied first (e.g. PLLaVA's weights on its base)")
    p.add_argument("--lora-alpha", dest="lora_alpha", type=_positive_float)
    p.add_argument("--average", metavar="OTHER", nargs="+",
                   help="other fine-tunes of the same model: write the weight average of all (uniform)")
    p.add_argument("--weight", type=float, help="with one OTHER: its share in the average (default 0.5)")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(run=run_convert)


# command -> the function that adds its parser (each sets `run`), or "module:function" imported
# when the parser is built: the whole CLI in one table.
COMMANDS = {
    "caption": _add_caption,
    "chat": _add_chat,
    "train": _add_train,
    "synth": _add_synth,
    "eval": "aurora.eval.cli:add_parser",
    "serve": "aurora.serve.cli:add_serve_parser",
    "gui": "aurora.serve.cli:add_gui_parser",
    "gallery": "aurora.gallery.cli:add_parser",
    "caption-batch": "aurora.batch.cli:add_parser",
    "convert": _add_convert,
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aurora", description="Efficient video-language models: caption, chat, train, serve, evaluate.")
    parser.add_argument("--version", action="version", version=f"aurora {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in COMMANDS.values():
        if isinstance(add, str):
            module, name = add.split(":")
            add = getattr(importlib.import_module(module), name)
        add(sub)
    return parser


def _visual_path(args) -> str:
    visual = args.visual or args.visual_alias
    if not visual:
        raise ConfigError("no video or image given: pass a path, e.g. aurora caption clip.mp4")
    return visual


def run_caption(args) -> int:
    from aurora import media

    visual = _visual_path(args)
    if not visual.lower().endswith(media.AUDIO_EXTENSIONS):  # sound only: for a model with an audio branch
        media.check_visual(visual)  # fail on a bad file before spending time on the model
    model = load_model(args)
    write = None if args.json else _stdout_writer()
    reply = model.caption(visual, prompt=args.prompt, **generation_kwargs(args), on_text=write)
    if args.json:
        print(json.dumps(caption_record(reply, args), ensure_ascii=False))
    else:
        print(flush=True)
    if args.profile:
        print(" ".join(f"{stage}={seconds:.3f}s" for stage, seconds in reply.timings.items()), file=sys.stderr)
        for counts in reply.visual_tokens:  # visual tokens after each reduction stage
            print("visual tokens: " + " -> ".join(f"{stage} {n}" for stage, n in counts.items()), file=sys.stderr)
    return 0


def caption_record(reply, args) -> dict:
    """The --json schema: one object per caption."""
    return {
        "caption": reply.text,
        "model": reply.model,
        "frame_indices": reply.frame_indices[0] if reply.frame_indices else [],
        "frame_timestamps": reply.frame_timestamps[0] if reply.frame_timestamps else [],
        "visual_tokens_per_frame": reply.visual_tokens_per_frame[0] if reply.visual_tokens_per_frame else 0,
        # the visual's tokens after each stage: patches -> encoder (after in-tower merging) -> language_model
        **({"visual_tokens": reply.visual_tokens[0]} if reply.visual_tokens else {}),
        "prompt_tokens": reply.prompt_tokens,
        "generated_tokens": reply.generated_tokens,
        "timings": reply.timings,
        **({"routing": reply.routing} if reply.routing else {}),  # mixture-of-experts models: experts chosen
        **({"clips": reply.clips[0]} if reply.clips else {}),  # clip-sampled models (Apollo): [start, end] s
        **({"audio": reply.audio[0]} if reply.audio else {}),  # models with an audio branch: how the sound was used
    }


def run_chat(args) -> int:
    from aurora import media

    visual = _visual_path(args)
    if not visual.lower().endswith(media.AUDIO_EXTENSIONS):  # sound only: for a model with an audio branch
        media.check_visual(visual)
    model = load_model(args)
    kind = "image" if Path(visual).suffix.lower() in media.IMAGE_EXTENSIONS else "video"
    frames = model.load_frames(visual, num_frames=args.num_frames, fps=args.fps)  # decoded once for all turns
    messages: list[dict] = []
    interactive = sys.stdin.isatty()
    write = _stdout_writer()
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        question = line.strip()
        if not question:
            continue
        content = [{"type": "text", "text": question}]
        if not messages:
            content.insert(0, {"type": kind, kind: frames})
        messages.append({"role": "user", "content": content})
        kwargs = generation_kwargs(args)
        kwargs.pop("fps")
        reply = model.chat(messages, **kwargs, on_text=write)
        print(flush=True)
        messages.append({"role": "assistant", "content": reply.text})
    return 0


def run_synth(args) -> int:
    from aurora.synth import SynthConfig, generate
    from aurora.synth.config import parse_tasks

    try:
        splits = tuple(float(x) for x in args.splits.split(","))
    except ValueError:
        raise ConfigError(f"--splits must be three comma-separated fractions, got {args.splits!r}") from None
    frames = args.frames or (32 if args.long else 16)
    config = SynthConfig(num_clips=args.num_clips, size=args.size, frames=frames, fps=args.fps, seed=args.seed,
                         splits=splits, out=args.out, tasks=parse_tasks(args.tasks), long=args.long)
    counts = generate(config, workers=args.workers)
    print(json.dumps(counts))
    return 0


TRAIN_FLAGS = ("data", "output_dir", "model", "train_parts", "lora_rank", "token_kept_ratio", "num_frames",
               "batch_size", "grad_accum", "lr", "max_steps", "warmup_steps", "save_every", "log_every",
               "mixed_precision", "loss_normalisation", "objective", "seed", "threads", "freeze_gates", "balance_loss")


def run_train(args) -> int:
    from aurora.train import load_config, train

    config = load_config(args.config, **{name: getattr(args, name) for name in TRAIN_FLAGS})
    final = train(config, resume=args.resume)
    print(f"model written to {final}")
    return 0


def run_convert(args) -> int:
    from aurora.models import average_weights, family_of, load, save

    if args.weight is not None and len(args.average or ()) != 1:
        raise ConfigError("--weight is OTHER's share with one --average model; several are averaged uniformly")
    dst = Path(args.dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ConfigError(f"{dst} exists and is not an empty directory: choose a new output directory")
    model = load(args.src, device="cpu", dtype="float32", trust_remote_code=args.trust_remote_code,
                 adapter=args.adapter, lora_alpha=args.lora_alpha)
    for count, path in enumerate(args.average or (), start=2):  # a running mean: each model 1 / count so far
        other = load(path, device="cpu", dtype="float32", trust_remote_code=args.trust_remote_code)
        average_weights(model, other, 1 / count if args.weight is None else args.weight)
    layouts = family_of(model).layouts
    if args.to not in layouts:
        raise ConfigError(f"--to {args.to!r}: a {model.preset.family} model is written as {' or '.join(layouts)}")
    save(model, dst, args.to)
    print(f"wrote {args.to} checkpoint to {dst}")
    return 0


def _stdout_writer():
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    return write


def _show_warning(shown_before):
    """Aurora's own warnings as one line, like its errors (no source excerpt); others as before."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, AuroraWarning):
            print(f"aurora: warning: {message}", file=sys.stderr)
        else:
            shown_before(message, category, filename, lineno, file, line)
    return show


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a one-line usage error (code 2)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    shown_before = warnings.showwarning
    warnings.showwarning = _show_warning(shown_before)
    try:
        return args.run(args)
    except AuroraError as e:
        if args.debug:
            raise
        print(f"aurora: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("aurora: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown_before


if __name__ == "__main__":
    sys.exit(main())
