"""Serving a model: an OpenAI-compatible HTTP API (`aurora serve`) and a browser app (`aurora gui`).

    from aurora.serve import ServeSettings, create_app, serve
    serve(ServeSettings(model="path/to/checkpoint", allowed_local_media_path="/data/videos"))

`app.py` holds the routes, `protocol.py` the OpenAI schema, `scheduler.py` concurrency and
queueing, `metrics.py` the Prometheus counters, `gui.py` the Gradio app and `token_view.py` the
merged-token picture. FastAPI, uvicorn and Gradio are imported only when used (`pip install
"aurora-vlm[serve]"`).
"""

from aurora.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve"]


def __getattr__(name):  # lazy: importing aurora.serve must not need the serve extra
    if name == "create_app":
        from aurora.serve.app import create_app

        return create_app
    if name == "serve":
        from aurora.serve.server import serve

        return serve
    raise AttributeError(name)
