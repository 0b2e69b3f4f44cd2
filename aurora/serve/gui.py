"""`aurora gui`: a Gradio app to caption and chat about a video or image.

AuroraCap's demo, with the same controls (video and image panels, prompt box, model path box, token
kept ratio 0.2 and 1-16 frames (default 8) sliders, temperature / top_p / beams / max new tokens in
"Advanced"), streaming answers, plus: a reducer method choice (tome, temporal, both, reuse; by
default the model's), the sampled frames with merged-token groups coloured (`token_view`: a token
merged across frames keeps its colour), or for a model that reads clips (Apollo) their timeline (`timeline`), the visual
token count and time per stage of every answer, and multi-turn chat
about the same media (frames are decoded once per conversation; a new video or image starts a new
conversation). Binds 127.0.0.1 and loads no web fonts, so nothing leaves the machine.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from aurora.errors import AuroraError

DEFAULT_RATIO = 0.2  # AuroraCap's demo defaults (its GUI), kept for every model: the sliders are the GUI's own
DEFAULT_FRAMES = 8
MAX_FRAMES = 16
DEFAULT_MAX_NEW_TOKENS = 2048  # AuroraCap's inference default
SESSION_SECONDS = 3600  # a tab's frames and messages are dropped after an hour unused
STAGES = ("decode", "preprocess", "encode", "prefill", "generate")
DEFAULT_REDUCTION = "model"  # the dropdown's "the model's own" (its preset, or `aurora gui --reduction`)
REDUCTIONS = [("the model's own", DEFAULT_REDUCTION), ("tome: per frame, in the encoder", "tome"),
              ("temporal: across frames", "temporal"), ("both: per frame, then across frames", "both"),
              ("reuse: the encoder skips what repeats", "reuse")]


class ModelCache:
    """The one model the app holds, reloaded when the model path box changes."""

    def __init__(self, path: str | None = None, model=None, **load_kwargs):
        self.path, self.model, self.load_kwargs = path, model, load_kwargs
        self._lock = threading.Lock()

    def get(self, path: str | None):
        from aurora.model_flags import open_model

        path = (path or "").strip() or self.path
        if not path:
            raise AuroraError("no model loaded: enter a checkpoint directory or hub id in the model path box")
        with self._lock:
            if self.model is None or path != self.path:
                self.model = None  # free the old one before loading the next
                self.model = open_model(path, **self.load_kwargs)
                self.path = path
            return self.model


def new_session() -> dict:
    """Per-browser-tab state: the media the conversation is about, its frames, the messages."""
    return {"media": None, "num_frames": None, "visuals": [], "messages": []}


def answer(cache: ModelCache, session: dict, history: list, video, image, prompt, model_path, ratio, reduction,
           num_frames, temperature, top_p, num_beams, max_new_tokens):
    """One turn, streamed: yields (history, merged-token picture, stats, session, prompt box)."""
    import gradio as gr

    from aurora.serve.token_view import token_view

    cancel = threading.Event()
    try:
        model = cache.get(model_path)
        reduction = None if reduction in (None, DEFAULT_REDUCTION) else reduction
        media = (video or None, image or None)
        if media != session["media"]:  # other media: a new conversation
            session, history = new_session(), []
            session["media"] = media
        num_frames, decode = int(num_frames), 0.0
        if session["num_frames"] != num_frames:  # decoded once per conversation and frame count
            start = time.perf_counter()
            session["visuals"] = [(kind, model.load_frames(path, num_frames=num_frames))
                                  for kind, path in (("image", image), ("video", video)) if path]
            session["num_frames"], decode = num_frames, time.perf_counter() - start
        prompt = (prompt or "").strip() or model.preset.template.default_prompt
        messages = _with_visuals(session["messages"] + [{"role": "user", "content": prompt}], session["visuals"])
        history = history + [{"role": "user", "content": prompt}, {"role": "assistant", "content": ""}]
        yield history, gr.skip(), gr.skip(), session, ""
        stream = model.chat(
            messages, stream=True, token_kept_ratio=float(ratio), reduction=reduction, temperature=float(temperature),
            top_p=float(top_p), num_beams=int(num_beams), max_new_tokens=int(max_new_tokens), cancel=cancel,
        )
        text = ""
        for delta in stream:
            text += delta
            history[-1] = {"role": "assistant", "content": text}
            yield history, gr.skip(), gr.skip(), session, ""
        reply = stream.reply
        reply.timings["decode"] = reply.timings.get("decode", 0.0) + decode
        history[-1] = {"role": "assistant", "content": reply.text}
        session["messages"] = session["messages"] + [
            {"role": "user", "content": prompt}, {"role": "assistant", "content": reply.text}]
        picture = None
        if session["visuals"] and session["visuals"][-1][1].clips:  # read as clips (Apollo): their timeline
            from aurora.serve.timeline import clip_timeline

            picture = clip_timeline(session["visuals"][-1][1])
        elif session["visuals"] and hasattr(model, "token_groups"):  # merged-token groups (composed models)
            picture = token_view(model, session["visuals"][-1][1].array, float(ratio), reduction)
        yield history, picture, stats_markdown(reply), session, ""
    except AuroraError as e:
        raise gr.Error(str(e)) from None
    finally:
        cancel.set()  # the user pressed Stop or left: the model stops at its next token


def _with_visuals(turns: list[dict], visuals: list) -> list[dict]:
    """Text turns (first one the user's) with the visuals put into the first user message."""
    if not visuals:
        return list(turns)
    first = [{"type": kind, kind: frames} for kind, frames in visuals] + [{"type": "text", "text": turns[0]["content"]}]
    return [{"role": "user", "content": first}] + turns[1:]


def stats_markdown(reply) -> str:
    """The cost of one answer: frames and visual tokens per visual, token counts, seconds per stage."""
    lines = ["| this answer | |", "|---|---|"]
    for i, (indices, per_frame) in enumerate(zip(reply.frame_indices, reply.visual_tokens_per_frame)):
        if i < len(reply.clips):  # read as clips (Apollo): tokens per clip, and each clip's seconds
            clips = reply.clips[i]
            spans = ", ".join(f"{start:.1f}-{end:.1f}" for start, end in clips)
            lines.append(f"| visual {i + 1} | {len(clips)} clips x {per_frame} visual tokens = "
                         f"**{len(clips) * per_frame} visual tokens** (seconds {spans}) |")
            continue
        # what reached the language model (merging across time or pooling leaves frames uneven)
        total = reply.visual_tokens[i]["language_model"] if i < len(reply.visual_tokens) else len(indices) * per_frame
        lines.append(f"| visual {i + 1} | {len(indices)} frames, **{total} visual tokens** "
                     f"({total / len(indices):.3g} a frame; frames {', '.join(map(str, indices))}) |")
    if reply.reduction and reply.frame_indices:
        lines.append(f"| reduced with | {reply.reduction} |")
    lines.append(f"| prompt tokens | {reply.prompt_tokens} |")
    lines.append(f"| generated tokens | {reply.generated_tokens} ({reply.finish_reason}) |")
    total = sum(reply.timings.get(stage, 0.0) for stage in STAGES)
    times = ", ".join(f"{stage} {reply.timings.get(stage, 0.0):.3f}" for stage in STAGES)
    lines.append(f"| seconds | {times}; total {total:.3f} |")
    return "\n".join(lines)


def build_gui(model=None, model_path: str | None = None, **load_kwargs):
    """The Gradio Blocks app; `model` may be preloaded (then `model_path` names it); `load_kwargs`
    (device, dtype, trust_remote_code, adapter, lora_alpha, ...) are `model_flags.open_model`'s for the path box."""
    import gradio as gr

    cache = ModelCache(model_path, model, **load_kwargs)
    max_new = model.preset.generation.max_new_tokens if model is not None else DEFAULT_MAX_NEW_TOKENS

    with gr.Blocks(title="Aurora", analytics_enabled=False) as demo:
        gr.Markdown("## Aurora: caption and chat about a video or image, with fewer visual tokens")
        session = gr.State(new_session(), time_to_live=SESSION_SECONDS)  # decoded frames: freed when idle
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Video", sources=["upload"], elem_id="aurora-video")
                image = gr.Image(label="Image", type="filepath", sources=["upload"], elem_id="aurora-image")
                model_box = gr.Textbox(label="Model path", value=model_path or "", elem_id="aurora-model",
                                       placeholder="checkpoint directory or hub id")
                ratio = gr.Slider(0.01, 1.0, value=DEFAULT_RATIO, step=0.01, label="Token kept ratio",
                                  info="0.2-0.4 for captions, > 0.5 for QA, > 0.8 for OCR")
                reduction = gr.Dropdown(REDUCTIONS, value=DEFAULT_REDUCTION, label="Reduction",
                                        info="how tokens are cut to the ratio", elem_id="aurora-reduction")
                frames = gr.Slider(1, MAX_FRAMES, value=DEFAULT_FRAMES, step=1, label="Number of frames")
                with gr.Accordion("Advanced", open=False):
                    temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top p")
                    beams = gr.Slider(1, 8, value=1, step=1, label="Beams (answers arrive at the end)")
                    max_new_tokens = gr.Slider(1, 4096, value=max_new, step=1, label="Max new tokens")
            with gr.Column(scale=2):
                chat = gr.Chatbot(label="Conversation", elem_id="aurora-chat", height=360)
                prompt = gr.Textbox(label="Prompt", placeholder="empty: the model's caption prompt",
                                    elem_id="aurora-prompt", lines=2)
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="aurora-send")
                    stop = gr.Button("Stop", elem_id="aurora-stop")
                    clear = gr.Button("New conversation", elem_id="aurora-clear")
                view = gr.Image(label="Merged visual tokens (one colour per token, kept across the frames it was "
                                "merged over; last visual); clip timeline for models that read clips", type="numpy",
                                interactive=False, elem_id="aurora-merge", format="png")
                stats = gr.Markdown(elem_id="aurora-stats")

        def run(*args):
            yield from answer(cache, *args)

        inputs = [session, chat, video, image, prompt, model_box, ratio, reduction, frames, temperature, top_p, beams,
                  max_new_tokens]
        outputs = [chat, view, stats, session, prompt]
        sent = send.click(run, inputs, outputs)
        submitted = prompt.submit(run, inputs, outputs)
        stop.click(None, cancels=[sent, submitted])
        clear.click(lambda: ([], None, "", new_session()), None, [chat, view, stats, session], cancels=[sent, submitted])
    return demo


def local_theme():
    """Gradio's default look with system fonts: no request to a font server."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def launch_gui(model=None, host: str = "127.0.0.1", port: int = 7860, block: bool = True, **load_kwargs):
    """Build and serve the app; `model` is a path / hub id (loaded now) or a loaded VideoLLM."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage reports leave the machine
    from aurora.model_flags import open_model

    path, loaded = (None, None) if model is None else (str(model), None)
    if model is not None and not isinstance(model, (str, Path)):
        path, loaded = str(getattr(model, "name", "")), model
    elif path is not None:
        loaded = open_model(path, **load_kwargs)
    demo = build_gui(loaded, path, **load_kwargs)
    demo.queue(default_concurrency_limit=1)  # one generation at a time: the model is shared
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, ssr_mode=False,
                theme=local_theme(), quiet=not block, share=False)
    return demo
