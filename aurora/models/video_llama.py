"""Video-LLaMA (DAMO-NLP-SG/Video-LLaMA): a LLaMA-2 / Vicuna decoder that hears and sees a video.

Two branches, each ending in tokens for the language model:

    vision: frames (T, 3, 224, 224) -> EVA ViT-g/14 (transformers' `Blip2VisionModel`, ToMe inside)
            -> ln_vision -> BLIP-2 Q-Former, 32 queries per frame -> + frame position (32 learned)
            -> video Q-Former (2 layers), 32 queries -> llama_proj: 32 tokens per video
    audio:  8 clips of 2 s -> filter banks (aurora.media.fbank) -> ImageBind-huge audio encoder
            (aurora.vision.audio_encoder) -> + clip position (8 learned) -> audio Q-Former
            (2 layers), 8 queries -> audio_llama_proj: 8 tokens

The prompt words each visual as Video-LLaMA's demo does (conversation_video.py): a video is
"<Video><ImageHere></Video> The video contains N frames sampled at t1, t2, ... seconds. " and, with
sound, the audio comes first: "Close your eyes, open your ears and you imagine only based on the
sound that: <ImageHere>. Close your ears, open your eyes and you see that <Video><ImageHere></Video>.
..." (with the demo's run of spaces, a quirk of its line continuations, and its emptied system).

Layouts read:
- "published": a decoder directory (`--model`, LLaMA-2 / Vicuna in transformers' layout) with the
  branches' published `.pth` files named explicitly (`load_published`, or `--vl-weights` /
  `--al-weights`), or listed in a `video_llama.json` inside the decoder directory
  (`{"vl_weights": [...], "al_weights": [...]}`, paths relative to it; optional "template":
  "video_llama" (Vicuna's "###") or "video_llama_2" (LLaMA-2-chat's [INST], the default when the
  decoder's chat template speaks it));
- "aurora": what `save` writes: the decoder, `video_llama.safetensors` (Aurora's names) and a
  `video_llama.json` with the branches' shapes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import Blip2VisionConfig, Blip2VisionModel

from aurora import media
from aurora.connectors.qformer import QueryStage, qformer_config
from aurora.errors import CheckpointError, ConfigError, MediaError
from aurora.generation import Generator
from aurora.media import fbank
from aurora.models.registry import Family
from aurora.models.reply import Reply
from aurora.models.splice import pad, splice
from aurora.models.video_llm import STAGES, ChatModel, _timed
from aurora.models.video_llama_weights import read_branch
from aurora.models.weights import from_pretrained, load_strict, load_tokenizer, quiet_transformers, read_config
from aurora.preset import Preset
from aurora.prompts import IMAGE_PLACEHOLDER, get_template, segment
from aurora.vision.audio_encoder import AudioEncoder, AudioEncoderConfig
from aurora.vision.tower import MergingVisionTower

log = logging.getLogger(__name__)
CONFIG_FILE, WEIGHTS_FILE = "video_llama.json", "video_llama.safetensors"
AUDIO_MODES = ("auto", "on", "off")
LN_VISION_EPS = 1e-5  # LAVIS's ln_vision is a default LayerNorm; EVA's own norms use 1e-6
# conversation_video.py's audio-visual message, spaces included (its string continues over lines)
HEAR = "Close your eyes, open your ears and you imagine only based on the sound that: {audio}."
SEE = ("                Close your ears, open your eyes and you see that <Video>{video}</Video>.  "
       "                Now answer my question based on what you have just seen and heard.")


@dataclass
class Shape:
    """The branches' sizes (defaults: the published ones). Tests write tiny ones."""

    vision: dict = field(default_factory=dict)  # Blip2VisionConfig fields (default: EVA ViT-g/14 at 224 px)
    qformer: dict = field(default_factory=dict)  # BERT fields shared by the three Q-Formers (default: BERT-base)
    frame_layers: int = 12
    frame_queries: int = 32
    video_layers: int = 2
    video_queries: int = 32
    frame_positions: int = 32
    audio: dict = field(default_factory=dict)  # AudioEncoderConfig fields (default: ImageBind-huge's)
    audio_layers: int = 2
    audio_queries: int = 8
    audio_positions: int = 8


class VisionBranch(nn.Module):
    """(T, 3, H, W) frames of one visual -> (1, 32, D) tokens, and the token count after each stage."""

    def __init__(self, shape: Shape, width: int):
        super().__init__()
        vision = Blip2VisionModel(Blip2VisionConfig(**shape.vision))
        vision.post_layernorm.eps = LN_VISION_EPS  # the post-norm is Video-LLaMA's ln_vision
        self.tower = MergingVisionTower(vision, feature_layer=-1, position_interpolation="transformers", keep_cls=True)
        hidden = vision.config.hidden_size
        self.frames = QueryStage(qformer_config(shape.frame_layers, hidden, 2, **shape.qformer), shape.frame_queries)
        bert = self.frames.qformer.config.hidden_size
        self.video = QueryStage(qformer_config(shape.video_layers, bert, 1, **shape.qformer), shape.video_queries,
                                positions=shape.frame_positions, out_features=width)

    def forward(self, pixels: torch.Tensor, token_kept_ratio: float = 1.0) -> tuple[torch.Tensor, dict]:
        out = self.tower(pixels, token_kept_ratio)
        features = self.tower.model.post_layernorm(out.features)  # (T, 1 + n, C): CLS kept, ln_vision
        per_frame = self.frames(features[:, None])  # (T, 32, H)
        tokens = self.video(per_frame[None])  # (1, 32, D)
        frames, side = pixels.shape[0], pixels.shape[-1] // self.tower.patch_size
        counts = {"patches": frames * side * side, "encoder": frames * (out.features.shape[1] - 1),
                  "language_model": tokens.shape[1]}
        return tokens, counts


class AudioBranch(nn.Module):
    """(S, 1, 128, 204) clips of one track -> (1, 8, D) tokens."""

    def __init__(self, shape: Shape, width: int):
        super().__init__()
        self.encoder = AudioEncoder(AudioEncoderConfig(**shape.audio))
        self.clips = QueryStage(qformer_config(shape.audio_layers, self.encoder.config.out_features, 1, **shape.qformer),
                                shape.audio_queries, positions=shape.audio_positions, out_features=width)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        embeddings = self.encoder(clips)  # (S, 1024)
        return self.clips(embeddings[None, :, None, :])  # (1, 8, D)


class VideoLLaMA(ChatModel):
    """Video-LLaMA's answering surface: the branches' tokens spliced into the decoder's prompt."""

    def __init__(self, vision: VisionBranch, audio: AudioBranch | None, language_model, tokenizer, preset: Preset,
                 shape: Shape | None = None, name: str = "video-llama"):
        super().__init__()
        self.vision, self.audio = vision, audio
        self.language_model, self.tokenizer, self.preset, self.name = language_model, tokenizer, preset, name
        self.shape = shape or Shape()
        self.transform = preset.vision.transform()
        self.template = get_template(preset.template.name)
        self.generator = Generator(language_model, tokenizer, self.template.stop, (IMAGE_PLACEHOLDER,),
                                   preset.generation.max_new_tokens)
        self.audio_mode = "auto" if audio is not None else "off"  # auto / on / off: see `use_sound`

    @property
    def part_kinds(self) -> tuple[str, ...]:
        return ("text", "image", "video", "audio") if self.audio is not None else ("text", "image", "video")

    @property
    def decode_size(self) -> int:
        return self.preset.vision.image_size

    def set_audio(self, mode: str) -> None:
        """"auto": use a visual's sound when this model has an audio branch and the file has sound;
        "on": require both; "off": the visual branch only."""
        if mode not in AUDIO_MODES:
            raise ConfigError(f"audio must be one of {', '.join(AUDIO_MODES)}, got {mode!r}")
        if mode == "on" and self.audio is None:
            raise ConfigError("--audio on: this Video-LLaMA model has no audio branch; load one with --al-weights")
        self.audio_mode = mode

    def load_frames(self, visual, num_frames=None, fps=None) -> media.Frames:
        if isinstance(visual, (str, Path)) and str(visual).lower().endswith(media.AUDIO_EXTENSIONS):
            return self.load_sound(visual)
        return super().load_frames(visual, num_frames, fps)

    def load_sound(self, path) -> media.Frames:
        """An audio file (or a video's track, for an audio part) as Frames without pictures."""
        if isinstance(path, media.Frames):  # already read (the server decodes parts before answering)
            return path if len(path.array) == 0 else self.load_sound(path.path)
        if self.audio is None:
            raise ConfigError(f"{path} is sound only and this Video-LLaMA model has no audio branch (load one with --al-weights)")
        path = str(path)
        if not media.has_audio(path):
            raise MediaError(f"{path} has no audio stream to describe")
        empty = np.zeros((0, self.decode_size, self.decode_size, 3), np.uint8)
        return media.Frames(empty, [], [], 0, None, None, path, False)

    # ---- encoding -------------------------------------------------------------------------------

    def sound(self, frames: media.Frames, notes: list[str]) -> torch.Tensor | None:
        """The visual's (S, 1, 128, 204) filter banks, or None (why is added to `notes`). A corrupt or
        empty track is a warning and the visual branch runs alone."""
        pictures = len(frames.array) > 0
        if not pictures and self.audio_mode == "off":
            raise ConfigError(f"{frames.path} is sound only and --audio off turns the audio branch off")
        if pictures and (self.audio_mode == "off" or self.audio is None or frames.is_image):
            notes.append("off" if self.audio_mode == "off" or self.audio is None else "image: no sound")
            return None
        if frames.audio is not None:  # already decoded by the caller
            samples = frames.audio
        else:
            if pictures and not media.has_audio(frames.path):
                if self.audio_mode == "on":
                    raise MediaError(f"{frames.path} has no sound: --audio on needs a video with an audio track "
                                     "(--audio auto runs the visual branch alone)")
                notes.append("no sound: visual branch only")
                return None
            try:
                samples, _ = media.load_audio(frames.path)
            except MediaError as e:
                if not pictures:
                    raise
                log.warning("%s; running the visual branch only", e)
                notes.append(f"unreadable sound ({e}): visual branch only")
                return None
        try:
            clips = fbank.audio_features(samples, num_clips=self.shape.audio_positions)
        except MediaError as e:
            if not pictures:
                raise MediaError(f"{frames.path}: {e}") from None
            log.warning("%s: %s; running the visual branch only", frames.path, e)
            notes.append(f"unusable sound ({e}): visual branch only")
            return None
        notes.append("used")
        return torch.from_numpy(clips)

    def visual_text(self, frames: media.Frames, has_pictures: bool, has_sound: bool) -> str:
        """How Video-LLaMA's demo words a visual (its placeholders inside)."""
        if has_pictures and has_sound:
            return HEAR.format(audio=IMAGE_PLACEHOLDER) + SEE.format(video=IMAGE_PLACEHOLDER)
        if has_sound:
            return HEAR.format(audio=IMAGE_PLACEHOLDER) + " "
        if frames.is_image:
            return f"<Image>{IMAGE_PLACEHOLDER}</Image> "
        times = ", ".join(str(round(float(t), 1)) for t in frames.timestamps)
        return f"<Video>{IMAGE_PLACEHOLDER}</Video> The video contains {len(frames.timestamps)} frames sampled at {times} seconds. "

    def prepare(self, messages, num_frames=None, fps=None, token_kept_ratio=None, template=None):
        ratio = self.check_options(num_frames, token_kept_ratio)
        chat = get_template(template) if template else self.template
        reply = Reply(text="", model=self.name, timings=dict.fromkeys(STAGES, 0.0))
        blocks: list[torch.Tensor] = []

        def encode(frames: media.Frames) -> str:
            pictures = len(frames.array) > 0
            with _timed(reply.timings, "preprocess"):
                clips = self.sound(frames, reply.audio)
                pixels = self.transform(frames.array) if pictures else None
            with _timed(reply.timings, "encode"):
                if clips is not None:  # the audio comes first in the prompt
                    blocks.append(self.audio(clips.to(self.device, self.dtype))[0])
                counts = {"patches": 0, "encoder": 0, "language_model": 0}
                if pictures:
                    tokens, counts = self.vision(pixels.to(self.device, self.dtype), ratio)
                    blocks.append(tokens[0])
                if clips is not None:
                    counts = {**counts, "audio": self.shape.audio_queries,
                              "language_model": counts["language_model"] + self.shape.audio_queries}
            reply.visual_tokens_per_frame.append(counts["language_model"])
            reply.visual_tokens.append(counts)
            return self.visual_text(frames, pictures, clips is not None)

        turns = self.render_turns(messages, num_frames, fps, reply, chat, encode)
        if "used" in reply.audio and turns[0][0] != "system":
            turns = [("system", "")] + turns  # the demo empties the system message when it hears the video
        segments, labels = segment([(chat.render(turns), False)], self.tokenizer)
        embeds, _ = splice(segments, labels, blocks, self.language_model.get_input_embeddings())
        reply.prompt_tokens = embeds.shape[0]
        return embeds[None], reply

    def collate(self, rows: list[torch.Tensor]) -> dict:
        embeds, mask = pad([row[0] for row in rows], side="left")
        return {"inputs_embeds": embeds, "attention_mask": mask}


def default_preset(audio: bool = True) -> Preset:
    """The demo's settings: 8 frames by its np.arange rule at 224 px squashed (decord's resize), CLIP
    mean/std, the Vicuna-style "###" template."""
    return Preset.of(family="video_llama", num_frames=8, sampling="stride", audio=audio, image_size=224,
                     resize="squash", feature_layer=-1, position_interpolation="transformers", token_kept_ratio=1.0,
                     template={"name": "video_llama", "layout": "video"}, max_new_tokens=300)


def build(vision: VisionBranch, audio: AudioBranch | None, language_model, tokenizer, preset: Preset,
          shape: Shape | None = None) -> VideoLLaMA:
    return VideoLLaMA(vision, audio, language_model, tokenizer, preset, shape)


def detect(path: Path, config: dict) -> str | None:
    if not (path / CONFIG_FILE).is_file():
        return None
    return "aurora" if (path / WEIGHTS_FILE).is_file() else "published"


def _decoder(path: Path, dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM

    return from_pretrained(AutoModelForCausalLM, path, dtype=dtype), load_tokenizer(path, trust_remote_code)


def _template_of(tokenizer) -> str:
    """Video-LLaMA's template for a decoder: Llama-2's [INST] one for a LLaMA-2-chat decoder (its
    chat template speaks [INST]), else the Vicuna-style "###" one."""
    return "video_llama_2" if "[INST]" in str(getattr(tokenizer, "chat_template", None) or "") else "video_llama"


def _assemble(decoder: Path, vision_state: dict, audio_state: dict | None, shape: Shape, dtype,
              trust_remote_code: bool, where: str, template: str | None = None) -> VideoLLaMA:
    language_model, tokenizer = _decoder(decoder, dtype, trust_remote_code)
    width = language_model.get_input_embeddings().weight.shape[1]
    vision = VisionBranch(shape, width)
    load_strict(vision, _with_aliases(vision_state), f"{where} (vision branch)")
    audio = None
    if audio_state is not None:
        audio = AudioBranch(shape, width)
        load_strict(audio, audio_state, f"{where} (audio branch)")
    defaults = default_preset(audio is not None).to_dict()
    defaults["vision"]["image_size"] = vision.tower.image_size  # the EVA's own (224 published)
    defaults["template"]["name"] = template or _template_of(tokenizer)
    preset = Preset.load(decoder, **defaults)
    if audio is None and preset.media.audio:
        preset = replace(preset, media=replace(preset.media, audio=False))
    model = build(vision.to(dtype), audio.to(dtype) if audio else None, language_model, tokenizer, preset, shape)
    return model.eval()


def open_published(decoder: str | Path, vl_weights: list, al_weights: list | None = None, device: str = "auto",
                   dtype: str = "auto", trust_remote_code: bool = False) -> VideoLLaMA:
    """`load_published` with `aurora.models.load`'s conveniences: a hub id or directory for the decoder,
    device and dtype by name (what `--vl-weights` / `--al-weights` call)."""
    from aurora.device import resolve_device, resolve_dtype
    from aurora.models import resolve

    if decoder is None:
        raise ConfigError("--vl-weights / --al-weights need the LLaMA-2 / Vicuna decoder: pass --model DIR")
    torch_device = resolve_device(device)
    model = load_published(resolve(decoder), vl_weights, al_weights, resolve_dtype(dtype, torch_device), trust_remote_code)
    model.name = str(decoder)
    return model.to(torch_device).eval()


_ALIAS = ("tower.layers.", "tower.model.encoder.layers.")  # MergingVisionTower holds the encoder's layers twice


def _with_aliases(state: dict) -> dict:
    return state | {_ALIAS[0] + k[len(_ALIAS[1]):]: v for k, v in state.items() if k.startswith(_ALIAS[1])}


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_published(decoder: str | Path, vl_weights: list, al_weights: list | None = None, dtype=torch.float32,
                   trust_remote_code: bool = False, shape: Shape | None = None) -> VideoLLaMA:
    """A decoder directory + the vision branch's published files (+ the audio branch's) -> a model.

    A missing part is a one-line error naming the file that holds it."""
    if not vl_weights:
        raise ConfigError("Video-LLaMA needs its vision branch: pass --vl-weights FILE ... (e.g. VL_LLaMA_2_7B_Finetuned.pth "
                          "with blip2_pretrained_flant5xxl.pth and eva_vit_g.pth)")
    vision = _strip(read_branch("vision", list(vl_weights)), "vision.")
    audio = _strip(read_branch("audio", list(al_weights)), "audio.") if al_weights else None
    _check_parts(vision, audio)
    decoder = Path(decoder)
    settings = read_config(decoder, CONFIG_FILE) if (decoder / CONFIG_FILE).is_file() else {}
    if shape is None:  # the published sizes, unless the decoder directory's video_llama.json states others
        shape = Shape(**settings.get("shape", {}))
    return _assemble(decoder, vision, audio, shape, dtype, trust_remote_code, str(decoder), settings.get("template"))


_NEEDED = {"tower.model.encoder.": "the EVA ViT weights (eva_vit_g.pth)", "frames.qformer.": "BLIP-2's Q-Former (blip2_pretrained_flant5xxl.pth)",
           "video.": "the vision branch checkpoint (VL_..._Finetuned.pth)"}
_NEEDED_AUDIO = {"encoder.": "ImageBind's weights (imagebind_huge.pth)", "clips.": "the audio branch checkpoint (AL_..._Finetuned.pth)"}


def _check_parts(vision: dict, audio: dict | None) -> None:
    for state, needed, flag in ((vision, _NEEDED, "--vl-weights"), (audio or {}, _NEEDED_AUDIO if audio else {}, "--al-weights")):
        for prefix, what in needed.items():
            if not any(k.startswith(prefix) for k in state):
                raise CheckpointError(f"the files given with {flag} lack {what}: add it to {flag}")


def load(path: Path, layout: str, dtype=torch.float32, trust_remote_code: bool = False) -> VideoLLaMA:
    settings = read_config(path, CONFIG_FILE)
    shape = Shape(**settings.get("shape", {}))
    if layout == "aurora":
        from safetensors.torch import load_file

        state = load_file(path / WEIGHTS_FILE)
        audio = _strip(state, "audio.") if settings.get("audio") else None
        return _assemble(path, _strip(state, "vision."), audio, shape, dtype, trust_remote_code, str(path / WEIGHTS_FILE))
    files = {key: [path / name for name in settings.get(key, [])] for key in ("vl_weights", "al_weights")}
    return load_published(path, files["vl_weights"], files["al_weights"], dtype, trust_remote_code, shape)


def save(model: VideoLLaMA, out: str | Path, layout: str = "aurora") -> None:
    """The decoder in transformers' layout, the branches in one safetensors file with Aurora's names."""
    from safetensors.torch import save_file

    if layout != "aurora":
        raise ConfigError(f"Video-LLaMA writes the layout 'aurora', not {layout!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.language_model.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    state = {f"vision.{k}": v for k, v in model.vision.state_dict().items() if not k.startswith(_ALIAS[0])}
    if model.audio is not None:
        state.update({f"audio.{k}": v for k, v in model.audio.state_dict().items()})
    save_file({k: v.detach().contiguous() for k, v in state.items()}, out / WEIGHTS_FILE, metadata={"format": "pt"})
    config = {"audio": model.audio is not None, "shape": asdict(model.shape)}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    model.preset.save(out)


FAMILY = Family(
    name="video_llama",
    layouts=("aurora", "published"),
    detect=detect,
    load=load,
    save=save,
    build=build,
    default_preset=default_preset,
    # Aurora's parts (EVA tower, Q-Formers, LM), composed in a ChatModel of its own (two branches):
    # frames are decoded at its tower's size, as for VideoLLM
    kind="composed",
)
