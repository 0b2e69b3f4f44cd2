"""The second kind of model: a transformers `*ForConditionalGeneration` fed its own inputs (ids
with image tokens, pixels) shares Aurora's answering machinery (ChatModel: replies, streaming,
stop strings; Generator: prompt stripped from what such a model returns). Wrapping transformers'
own LLaVA this way answers exactly as the composed AuroraCap model on the same checkpoint."""

import torch
from transformers import LlavaForConditionalGeneration

import aurora
from aurora.generation import Generator
from aurora.messages import normalise_messages
from aurora.models.reply import Reply
from aurora.models.splice import pad
from aurora.models.video_llm import ChatModel
from aurora.prompts import IMAGE_PLACEHOLDER, get_template, segment, user_content
from aurora.testing.media import make_frames, write_video


class NativeLlava(ChatModel):
    """A minimal native wrapper: each frame an image of the model's own placeholder tokens."""

    def __init__(self, llava, tokenizer, preset):
        super().__init__()
        self.model, self.tokenizer, self.preset, self.name = llava, tokenizer, preset, "native-llava"
        self.template = get_template(preset.template.name)
        self.generator = Generator(llava, tokenizer, self.template.stop, (IMAGE_PLACEHOLDER,), 12)
        self.transform = preset.vision.transform()

    def prepare(self, messages, num_frames=None, fps=None, token_kept_ratio=None):
        reply, turns, pixels = Reply(text="", model=self.name), [], []
        for role, parts in normalise_messages(messages):
            words, counts = [], []
            for kind, value in parts:
                if kind == "text":
                    words.append(value)
                    continue
                frames = self.load_frames(value, num_frames=num_frames, fps=fps)
                pixels.append(self.transform(frames.array))
                counts.append(len(frames.indices))
                reply.frame_indices.append(list(frames.indices))
            turns.append((role, user_content(counts, " ".join(words))))
        segments, _ = segment([(self.template.render(turns), False)], self.tokenizer)
        per_image = self.model.config.image_seq_length
        ids = [i for k, s in enumerate(segments) for i in s + ([self.model.config.image_token_id] * per_image
                                                               if k < len(segments) - 1 else [])]
        reply.prompt_tokens = len(ids)
        return {"input_ids": torch.tensor(ids), "pixel_values": torch.cat(pixels)}, reply

    def collate(self, rows):
        ids, mask = pad([row["input_ids"] for row in rows], side="left", value=self.tokenizer.pad_token_id)
        return {"input_ids": ids, "attention_mask": mask, "pixel_values": torch.cat([r["pixel_values"] for r in rows])}


def test_a_native_model_answers_through_the_shared_machinery(hf_ckpt, tmp_path):
    composed = aurora.load(hf_ckpt)
    llava = LlavaForConditionalGeneration.from_pretrained(hf_ckpt).eval()
    native = NativeLlava(llava, composed.tokenizer, composed.preset)
    clip = write_video(tmp_path / "clip.mp4", make_frames(8), fps=8)
    ours = composed.caption(clip, max_new_tokens=10, token_kept_ratio=1.0)
    theirs = native.caption(clip, max_new_tokens=10)
    assert theirs.text == ours.text and theirs.generated_tokens == ours.generated_tokens
    assert theirs.prompt_tokens == ours.prompt_tokens  # the same splice, done by transformers
    streamed = native.caption(clip, max_new_tokens=10, stream=True)
    assert "".join(streamed) == ours.text
    stop = ours.text.split()[1] if len(ours.text.split()) > 1 else ours.text[:2]
    assert native.caption(clip, max_new_tokens=10, stop=[stop]).text == ours.text[:ours.text.find(stop)]
