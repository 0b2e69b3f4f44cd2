"""`serve(settings)`: load the model, build the app and run it with uvicorn (blocks until stopped)."""

from __future__ import annotations

from aurora.serve.settings import ServeSettings


def serve(settings: ServeSettings, model=None) -> None:
    import uvicorn

    from aurora.model_flags import open_model, use_reduction
    from aurora.serve import memory
    from aurora.serve.app import create_app

    memory.bound_arenas()  # before the model's threads make their own arenas
    if model is None:
        model = open_model(settings.model, device=settings.device, dtype=settings.dtype,
                           trust_remote_code=settings.trust_remote_code, adapter=settings.adapter,
                           lora_alpha=settings.lora_alpha, vl_weights=settings.vl_weights,
                           al_weights=settings.al_weights, audio=settings.audio)
    use_reduction(model, settings.reduction)
    app = create_app(model, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=5)
