"""`ServeSettings`: everything `aurora serve` is started with, validated once, in one flat dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from aurora.errors import ConfigError
from aurora.media.sources import SourcePolicy
from aurora.vision.reduce import METHODS

MB = 1024**2


@dataclass
class ServeSettings:
    model: str  # checkpoint directory or hub id; also the served model id
    host: str = "127.0.0.1"
    port: int = 8000
    allowed_local_media_path: str | None = None  # local files (file:// or paths) only under this directory
    max_concurrency: int = 1  # generations running at once (each in a worker thread)
    max_queue: int = 8  # requests waiting behind them; beyond that: 503 + Retry-After
    api_key: str | None = None  # when set, /v1/* needs "Authorization: Bearer KEY"
    media_timeout: float = 30.0  # seconds per http(s) media fetch
    max_media_bytes: int = 200 * MB  # per media item
    allow_private_media_urls: bool = False  # let http(s) media reach loopback / private networks
    max_body_bytes: int = 64 * MB  # request body; base64 data URLs inflate media by 4/3
    max_tokens: int | None = None  # cap on a request's max_tokens; None: the model's context length
    max_visuals: int = 32  # images + videos per request (send many frames as one video instead)
    request_timeout: float | None = 600.0  # seconds per request, then the model is stopped (504)
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    adapter: str | None = None  # adapter directory applied at load time (see aurora.load)
    lora_alpha: float | None = None
    vl_weights: list[str] | None = None  # Video-LLaMA's branch files around the decoder (`model`)
    al_weights: list[str] | None = None
    audio: str = "auto"  # a video's sound: auto | on | off (models with an audio branch)
    reduction: str | None = None  # the reducer method for every request (None: the model's preset)

    def __post_init__(self):
        checks = [
            (0 <= self.port <= 65535, f"port must be in 0..65535, got {self.port}"),
            (self.max_concurrency >= 1, f"max concurrency must be >= 1, got {self.max_concurrency}"),
            (self.max_queue >= 0, f"max queue must be >= 0, got {self.max_queue}"),
            (self.max_body_bytes >= 1024, f"max body bytes must be >= 1024, got {self.max_body_bytes}"),
            (self.max_tokens is None or self.max_tokens >= 1, f"max tokens must be >= 1, got {self.max_tokens}"),
            (self.max_visuals >= 1, f"max visuals must be >= 1, got {self.max_visuals}"),
            (self.request_timeout is None or self.request_timeout > 0,
             f"the request timeout must be > 0 seconds, got {self.request_timeout}"),
            (self.api_key is None or self.api_key.strip() != "", "the API key must not be empty"),
            (self.reduction is None or self.reduction in METHODS,
             f"reduction must be one of {', '.join(METHODS)}, got {self.reduction!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.media_policy()  # validates the media directory, timeout and size cap

    def media_policy(self) -> SourcePolicy:
        return SourcePolicy(
            allowed_local_media_path=self.allowed_local_media_path,
            timeout=self.media_timeout,
            max_bytes=self.max_media_bytes,
            allow_private_urls=self.allow_private_media_urls,
        )
