"""A model's preset: the preprocessing and defaults that travel with its checkpoint.

Stored next to the weights (`aurora_preset.json`) in sections that follow the pipeline, each
validated by the module that owns it:

    media      (aurora.media.settings)   frames, sampling, audio
    vision     (aurora.vision.settings)  resolution, normalisation, resizing, features taken
    reducer    (aurora.vision.reduce)    token kept ratio and how merging runs
    template   (aurora.prompts)          conversation template, placeholder layout, default prompt
    generation (aurora.generation)       default generation limits

so the CLI, server, GUI, evaluation and training cannot disagree about how a model is fed: they
take their defaults from here only. The connector's own shape lives with its weights. Files written
before the sections existed (one flat object) are read too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from aurora.errors import ConfigError
from aurora.generation import GenerationSettings
from aurora.media.settings import MediaSettings
from aurora.prompts import TemplateSettings
from aurora.vision.reduce import ReducerSettings
from aurora.vision.settings import VisionSettings

PRESET_FILE = "aurora_preset.json"
SECTIONS = {"media": MediaSettings, "vision": VisionSettings, "reducer": ReducerSettings,
            "template": TemplateSettings, "generation": GenerationSettings}
# a flat (pre-section) field -> (section, field); "template" was the template's name
_FLAT = {f.name: (section, f.name) for section, cls in SECTIONS.items() for f in fields(cls)}
_FLAT["template"] = ("template", "name")


@dataclass
class Preset:
    family: str = "auroracap"
    media: MediaSettings = field(default_factory=MediaSettings)
    vision: VisionSettings = field(default_factory=VisionSettings)
    reducer: ReducerSettings = field(default_factory=ReducerSettings)
    template: TemplateSettings = field(default_factory=TemplateSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)

    @classmethod
    def from_dict(cls, data: dict, where: str = "preset") -> "Preset":
        """Sections ({"media": {...}, ...}) or flat fields ({"num_frames": 8, ...}), or both."""
        sections: dict[str, dict] = {name: {} for name in SECTIONS}
        family = data.get("family", cls.family)
        for key, value in data.items():
            if key == "family":
                continue
            if key in SECTIONS and isinstance(value, dict):
                sections[key].update(value)
            elif key in _FLAT:
                section, name = _FLAT[key]
                sections[section][name] = value
            else:
                raise ConfigError(f"{where} has an unknown field {key!r}; remove it")
        built = {}
        for name, cls_ in SECTIONS.items():
            known = {f.name for f in fields(cls_)}
            unknown = sorted(set(sections[name]) - known)
            if unknown:
                raise ConfigError(f"{where} has unknown fields {unknown} in its {name} section; remove them")
            built[name] = cls_(**sections[name])
        return cls(family=family, **built)

    @classmethod
    def of(cls, **fields) -> "Preset":
        """A preset from field names, flat or by section: `Preset.of(num_frames=4, image_size=64)`."""
        return cls.from_dict(fields)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, directory: str | Path) -> None:
        Path(directory, PRESET_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, **defaults) -> "Preset":
        """The preset stored in `directory`, else the family's `defaults` (flat or sectioned);
        stored fields win over defaults."""
        path = Path(directory, PRESET_FILE)
        if not path.is_file():
            return cls.from_dict(defaults)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON ({e}); fix or delete it") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        cls.from_dict(data, where=str(path))  # one-line errors name the file
        merged = cls.from_dict(defaults).to_dict()
        for key, value in data.items():  # stored values override the defaults field by field
            if key == "family":
                merged["family"] = value
            elif key in SECTIONS and isinstance(value, dict):
                merged[key].update(value)
            else:
                section, name = _FLAT[key]
                merged[section][name] = value
        return cls.from_dict(merged, where=str(path))
