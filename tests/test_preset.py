"""The preset in pipeline sections: each section validated by its owner, files written before the
sections existed still read, stored values override a family's defaults."""

import json

import pytest

from aurora.errors import ConfigError
from aurora.preset import PRESET_FILE, Preset

FLAT = {"family": "auroracap", "image_size": 64, "resize": "squash", "temporal_input": "motion", "vision_stem": "cnn",
        "num_frames": 8, "sampling": "uniform", "token_kept_ratio": 0.2, "feature_layer": -1,
        "proportional_attention": False, "merge_schedule": "constant", "position_interpolation": "transformers",
        "template": "vicuna", "default_prompt": "Describe the video in detail.", "max_new_tokens": 96}


def test_a_flat_preset_file_reads_into_the_same_sections(tmp_path):
    (tmp_path / PRESET_FILE).write_text(json.dumps(FLAT))
    preset = Preset.load(tmp_path)
    assert (preset.vision.image_size, preset.vision.vision_stem, preset.media.num_frames) == (64, "cnn", 8)
    assert (preset.reducer.token_kept_ratio, preset.template.name, preset.generation.max_new_tokens) == (0.2, "vicuna", 96)
    (tmp_path / "again").mkdir()
    preset.save(tmp_path / "again")
    stored = json.loads((tmp_path / "again" / PRESET_FILE).read_text())
    assert set(stored) == {"family", "media", "vision", "reducer", "template", "generation"}
    assert Preset.load(tmp_path / "again") == preset


def test_stored_fields_override_family_defaults_one_by_one(tmp_path):
    (tmp_path / PRESET_FILE).write_text(json.dumps({"media": {"num_frames": 4}}))
    preset = Preset.load(tmp_path, image_size=336, feature_layer=-1)
    assert (preset.media.num_frames, preset.media.sampling) == (4, "uniform")
    assert (preset.vision.image_size, preset.vision.feature_layer) == (336, -1)
    assert Preset.load(tmp_path / "missing", image_size=336).vision.image_size == 336


@pytest.mark.parametrize("data, message", [
    ({"token_kept_ratio": 0}, "token_kept_ratio must be in"),
    ({"media": {"num_frames": 0}}, "num_frames must be >= 1"),
    ({"template": {"layout": "sideways"}}, "layout must be one of"),
    ({"vision": {"resize": "stretch"}}, "resize must be one of"),
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"media": {"frames": 3}}, "unknown fields \\['frames'\\] in its media section"),
])
def test_each_section_is_validated_with_one_line(tmp_path, data, message):
    (tmp_path / PRESET_FILE).write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        Preset.load(tmp_path)
