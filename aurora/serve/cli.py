"""The `serve` and `gui` subcommands: flags -> `ServeSettings` / `launch_gui` arguments.

`aurora.cli` adds them with `add_parsers(subparsers)` (or one at a time); each sets `run` to a
handler taking the parsed args. Mistakes raise AuroraError (one line, exit code 2).
"""

from __future__ import annotations

import argparse

from aurora.argtypes import count as _count
from aurora.argtypes import positive_float as _positive_float
from aurora.argtypes import positive_int as _positive_int
from aurora.errors import ConfigError
from aurora.model_flags import add_load_flags, add_reduction_flag, load_kwargs
from aurora.models import DEFAULT_MODEL

_MB = 1024**2


def _add_model_flags(p: argparse.ArgumentParser, required: bool) -> None:
    add_load_flags(p, required=required)
    add_reduction_flag(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API")
    _add_model_flags(p, required=False)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allowed-local-media-path", metavar="DIR", help="allow file:// URLs and paths, only inside DIR")
    p.add_argument("--max-concurrency", type=_positive_int, default=1, metavar="N", help="generations at once (default 1)")
    p.add_argument("--max-queue", type=_count, default=8, metavar="M", help="requests waiting beyond N; more get 503 (default 8)")
    p.add_argument("--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' on /v1/*")
    p.add_argument("--allow-private-media-urls", action="store_true", help="let media URLs reach loopback and private networks")
    p.add_argument("--media-timeout", type=_positive_float, default=30.0, metavar="S", help="seconds per media download (default 30)")
    p.add_argument("--max-media-mb", type=_positive_float, default=200.0, metavar="MB", help="size cap per media item (default 200)")
    p.add_argument("--max-body-mb", type=_positive_float, default=64.0, metavar="MB", help="request body cap (default 64)")
    p.add_argument("--max-tokens", type=_positive_int, default=None, metavar="N",
                   help="largest max_tokens a request may ask for (default: the model's context length)")
    p.add_argument("--max-visuals", type=_positive_int, default=32, metavar="N",
                   help="images and videos per request (default 32)")
    p.add_argument("--request-timeout", type=_positive_float, default=600.0, metavar="S",
                   help="seconds a request may take before the model is stopped and it gets a 504 (default 600)")
    p.set_defaults(run=run_serve)
    return p


def add_gui_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("gui", help="open the browser app: caption and chat about a video or image")
    _add_model_flags(p, required=False)
    p.add_argument("--port", type=int, default=7860)
    p.set_defaults(run=run_gui)
    return p


def add_parsers(subparsers) -> None:
    add_serve_parser(subparsers)
    add_gui_parser(subparsers)


def run_serve(args) -> int:
    _require("fastapi", "uvicorn")
    from aurora.serve.server import serve
    from aurora.serve.settings import ServeSettings

    settings = ServeSettings(
        model=args.model or str(DEFAULT_MODEL), host=args.host, port=args.port, allowed_local_media_path=args.allowed_local_media_path,
        max_concurrency=args.max_concurrency, max_queue=args.max_queue, api_key=args.api_key,
        media_timeout=args.media_timeout, max_media_bytes=int(args.max_media_mb * _MB),
        allow_private_media_urls=args.allow_private_media_urls, max_body_bytes=int(args.max_body_mb * _MB),
        device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
        adapter=args.adapter, lora_alpha=args.lora_alpha, vl_weights=args.vl_weights, al_weights=args.al_weights,
        audio=args.audio, max_tokens=args.max_tokens, max_visuals=args.max_visuals,
        request_timeout=args.request_timeout, reduction=args.reduction,
    )
    serve(settings)
    return 0


def run_gui(args) -> int:
    _require("gradio")
    from aurora.serve.gui import launch_gui

    model = args.model or (str(DEFAULT_MODEL) if DEFAULT_MODEL.is_dir() else None)
    launch_gui(model=model, host=args.host, port=args.port, reduction=args.reduction, **load_kwargs(args))
    return 0


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not installed: pip install 'aurora-vlm[serve]'")
