"""Prompt templates (fixtures/prompts/*.toml): loading, rendering an item, and content hashes.

A template has a stable name, a mode (`loglik` scores each label as a continuation; `generate` asks
for a JSON answer) and one section per language. Placeholders are `{question}`, `{options}` and
`{labels}`; any other brace is literal text, so JSON examples need no escaping.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from medgate.items import Item
from medgate.paths import fixtures_dir

MODES = ("loglik", "generate")
_PLACEHOLDER = re.compile(r"\{(question|options|labels)\}")
_LABEL_LIST_CONJUNCTION = {"en": "or", "es": "o"}


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    mode: str
    language: str
    system: str
    template: str
    option_line: str
    continuation: str
    description: str = ""

    @cached_property
    def content_hash(self) -> str:
        payload = {
            "name": self.name,
            "mode": self.mode,
            "language": self.language,
            "system": self.system,
            "template": self.template,
            "option_line": self.option_line,
            "continuation": self.continuation,
        }
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt before tokenizer-specific formatting (chat template or plain text)."""

    system: str
    user: str

    def as_plain_text(self) -> str:
        return f"{self.system}\n\n{self.user}" if self.system else self.user


def label_list(labels: Sequence[str], language: str) -> str:
    if len(labels) == 1:
        return labels[0]
    conjunction = _LABEL_LIST_CONJUNCTION.get(language, "or")
    return f"{', '.join(labels[:-1])} {conjunction} {labels[-1]}"


def render(template: PromptTemplate, item: Item) -> RenderedPrompt:
    options = "\n".join(
        template.option_line.replace("{label}", o.label).replace("{text}", o.text) for o in item.options
    )
    values = {"question": item.question, "options": options, "labels": label_list(item.labels, item.language)}
    user = _PLACEHOLDER.sub(lambda match: values[match.group(1)], template.template)
    return RenderedPrompt(system=template.system, user=user)


def json_answer(label: str) -> str:
    """The exact answer object the generate-mode prompts ask for."""
    return json.dumps({"answer": label}, ensure_ascii=False)


def continuation_text(template: PromptTemplate, label: str) -> str:
    """What follows the prompt for a given label: scored in loglik mode, the target in generate mode."""
    text = template.continuation.replace("{label}", label)
    return text.replace("{json}", json_answer(label)) if "{json}" in text else text


def _load_file(path: Path) -> dict[str, PromptTemplate]:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    name, mode = data.get("name"), data.get("mode")
    if name != path.stem:
        raise PromptError(f"{path}: name {name!r} must equal the file name {path.stem!r}")
    if mode not in MODES:
        raise PromptError(f"{path}: mode must be one of {MODES}, not {mode!r}")
    templates: dict[str, PromptTemplate] = {}
    for language in ("en", "es"):
        section = data.get(language)
        if section is None:
            continue
        missing = {"template", "option_line"} - set(section)
        if missing:
            raise PromptError(f"{path}: [{language}] lacks {sorted(missing)}")
        templates[language] = PromptTemplate(
            name=name,
            mode=mode,
            language=language,
            system=section.get("system", ""),
            template=section["template"],
            option_line=section["option_line"],
            continuation=data.get("continuation", " {label}"),
            description=data.get("description", ""),
        )
    if not templates:
        raise PromptError(f"{path}: no [en] or [es] section")
    return templates


@lru_cache(maxsize=None)
def prompt_library(directory: Path | None = None) -> dict[str, dict[str, PromptTemplate]]:
    """All templates, by name, then by language."""
    folder = directory or fixtures_dir() / "prompts"
    return {path.stem: _load_file(path) for path in sorted(folder.glob("*.toml"))}


DEFAULT_PROMPT = {"loglik": "p0", "generate": "j0"}


def select_prompts(spec: str, modes: Sequence[str]) -> list[str]:
    """`default`, `all`, or a comma-separated list of names; only names of the selected modes."""
    library = prompt_library()
    def mode_of(name: str) -> str:
        return next(iter(library[name].values())).mode
    if spec == "default":
        return [DEFAULT_PROMPT[mode] for mode in modes]
    if spec == "all":
        return [name for name in library if mode_of(name) in modes]
    names = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [name for name in names if name not in library]
    if unknown:
        raise PromptError(f"unknown prompt(s) {unknown}; known: {', '.join(library)}")
    return [name for name in names if mode_of(name) in modes]


def template_for(name: str, language: str) -> PromptTemplate:
    by_language = prompt_library()[name]
    if language not in by_language:
        raise PromptError(f"prompt {name!r} has no {language!r} version")
    return by_language[language]
