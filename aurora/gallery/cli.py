"""The `gallery` subcommand: result folders in, a read-only browser app out.

`add_parser(subparsers)` adds it; the folders are read (and checked, one-line errors) before
Gradio is imported, so a wrong path never costs a server start.
"""

from __future__ import annotations

from aurora.errors import ConfigError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("gallery", help="browse `aurora eval` results side by side (read-only browser app)",
                              description="Open result folders of `aurora eval` (any benchmark, synth included) "
                                          "and compare their predictions item by item.")
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR", help="result folders (the --out of `aurora eval`)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7861)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(run=run_gallery)


def run_gallery(args) -> int:
    import importlib.util

    from aurora.gallery.runs import load_runs

    runs = load_runs(args.results)
    _check_port(args.host, args.port)  # before Gradio's slow import
    if importlib.util.find_spec("gradio") is None:
        raise ConfigError("gradio not installed: pip install 'aurora-vlm[serve]'")
    from aurora.gallery.app import launch_gallery

    try:
        launch_gallery(runs, host=args.host, port=args.port)
    except OSError as e:  # the port is taken, the address is not this machine's
        raise ConfigError(f"cannot serve the gallery on {args.host}:{args.port} ({e}); choose another --port") from None
    return 0


def _check_port(host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as e:
            raise ConfigError(f"cannot serve the gallery on {host}:{port} ({e.strerror or e}); choose another --port") from None
