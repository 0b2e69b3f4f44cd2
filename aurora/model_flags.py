"""Command-line flags for choosing, loading and running a model, written once for every command
(caption, chat, eval, serve, gui, caption-batch), with AuroraCap's spellings as aliases."""

from __future__ import annotations

import argparse

from aurora.argtypes import positive_float, positive_int, ratio
from aurora.vision.reduce import METHODS


def add_load_flags(p, required: bool = False, branch_files: bool = True) -> None:
    """--model, --adapter, --lora-alpha, --device, --dtype, --trust-remote-code, and (branch_files)
    Video-LLaMA's --vl-weights / --al-weights with --audio."""
    p.add_argument("--model", "--model_path", dest="model", required=required,
                   help="checkpoint directory or hub id (default: the bundled model)")
    p.add_argument("--adapter", help="adapter directory applied at load time (LoRA: peft's layout)")
    p.add_argument("--lora-alpha", dest="lora_alpha", type=positive_float,
                   help="scale the adapter's LoRA as alpha / rank with this alpha instead of the saved one")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16")
    p.add_argument("--trust-remote-code", action="store_true", help="allow code shipped with a checkpoint to run")
    if not branch_files:
        return
    p.add_argument("--vl-weights", dest="vl_weights", nargs="+", metavar="PTH",
                   help="Video-LLaMA: the vision branch's .pth files (VL checkpoint, BLIP-2 Q-Former, EVA ViT); --model is the decoder")
    p.add_argument("--al-weights", dest="al_weights", nargs="+", metavar="PTH",
                   help="Video-LLaMA: the audio branch's .pth files (AL checkpoint, imagebind_huge.pth)")
    p.add_argument("--audio", choices=("auto", "on", "off"), default="auto",
                   help="a video's sound: auto (when the model has an audio branch and the file has sound), on, off")


def add_reduction_flag(p) -> None:
    p.add_argument("--reduction", choices=METHODS,
                   help="how tokens are reduced: tome (per frame, in the encoder), temporal (across frames), "
                        "both, reuse (a video's encoder skips what repeats) (default: the model's preset)")


def add_generation_flags(p, max_new_tokens_help: str = "default: the model's preset") -> None:
    """Frames, token kept ratio and decoding knobs; None means the model's preset."""
    p.add_argument("--num-frames", "--num_frm", dest="num_frames", type=positive_int,
                   help="frames sampled per video (default: the model's preset, 8 for AuroraCap)")
    p.add_argument("--fps", type=positive_float, help="sample at this many frames per second instead (capped by --num-frames)")
    p.add_argument("--token-kept-ratio", "--token_kept_ratio", dest="token_kept_ratio", type=ratio,
                   help="share of visual tokens that reach the language model, in (0, 1] (default: preset)")
    add_reduction_flag(p)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", "--top_p", dest="top_p", type=float, default=1.0)
    p.add_argument("--num-beams", "--num_beams", dest="num_beams", type=positive_int, default=1)
    p.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=positive_int,
                   help=max_new_tokens_help)
    p.add_argument("--seed", type=int, help="random seed for sampling")


def load_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of `open_model` that add_load_flags sets (all but the model)."""
    options = dict(device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                   adapter=getattr(args, "adapter", None), lora_alpha=getattr(args, "lora_alpha", None))
    if hasattr(args, "vl_weights"):  # add_load_flags(branch_files=True)
        options.update(vl_weights=args.vl_weights, al_weights=args.al_weights, audio=args.audio)
    return options


def use_reduction(model, method: str | None) -> None:
    """Set the model's reducer method (`--reduction`; None: keep the preset's); one line if the
    model does not implement it."""
    if method is not None:
        model.set_reduction(method)


def open_model(model, *, vl_weights=None, al_weights=None, audio: str = "auto", reduction: str | None = None,
               **load_options):
    """`aurora.load(model, **load_options)`, or Video-LLaMA from its published branch files around a
    decoder directory; then the sound setting (`audio`: auto | on | off) and the reducer method
    (`reduction`, None: the preset's). What every command that loads a model by flags calls
    (caption, chat, eval, serve, gui)."""
    from aurora.errors import ConfigError
    from aurora.models import load

    if vl_weights or al_weights:  # Video-LLaMA's published files around a decoder directory
        from aurora.models.video_llama import open_published

        if load_options.get("adapter") or load_options.get("lora_alpha"):
            raise ConfigError("--adapter / --lora-alpha do not apply to Video-LLaMA's branch files (--vl-weights / --al-weights)")
        loaded = open_published(model, vl_weights, al_weights, device=load_options.get("device", "auto"),
                                dtype=load_options.get("dtype", "auto"),
                                trust_remote_code=load_options.get("trust_remote_code", False))
    else:
        loaded = load(model, **load_options)
    if hasattr(loaded, "set_audio"):
        loaded.set_audio(audio)
    elif audio == "on":
        raise ConfigError(f"--audio on: this {loaded.preset.family} model has no audio branch")
    use_reduction(loaded, reduction)
    return loaded


def load_model(args: argparse.Namespace):
    """The model of caption / chat / caption-batch; --reduction overrides the preset's reducer method."""
    return open_model(args.model, reduction=getattr(args, "reduction", None), **load_kwargs(args))


def generation_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        num_frames=args.num_frames, fps=args.fps, token_kept_ratio=args.token_kept_ratio,
        temperature=args.temperature, top_p=args.top_p, num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens, seed=args.seed,
    )
