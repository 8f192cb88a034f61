"""Turning model outputs into answers: log-likelihood choice, and strict/lenient JSON answers.

Lenient extraction cascade for generate mode (first that applies wins; the step is recorded):
  1. `strict`      the whole output is one JSON object valid against answer.schema.json whose
                   `answer` is a presented label;
  2. `json_object` the first balanced {...} in the output parses and has a presented label as `answer`
                   (label compared case-insensitively, surrounding whitespace/brackets ignored);
  3. `answer_key`  an `"answer": X` / `answer: X` pattern names a presented label;
  4. `leading_label` the output starts with a presented label on its own ("B", "B.", "(B)", "B)");
  5. `option_text` exactly one option's full text occurs in the output (case-insensitive).
Otherwise no answer. Non-compliant output is an outcome, never an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from medgate.items import Item
from medgate.schemas import load_schema


def choose(logprobs: Sequence[float]) -> int:
    """Index of the highest score; ties go to the earliest option (as argmax)."""
    best = 0
    for index, value in enumerate(logprobs):
        if value > logprobs[best]:
            best = index
    return best


@dataclass(frozen=True)
class JsonAnswer:
    schema_valid: bool
    strict_answer: str | None
    lenient_answer: str | None
    lenient_method: str | None


_validators: dict[tuple[str, ...], Draft202012Validator] = {}


def answer_validator(labels: Sequence[str]) -> Draft202012Validator:
    key = tuple(labels)
    if key not in _validators:
        schema = json.loads(json.dumps(load_schema("answer")))
        schema["properties"]["answer"]["enum"] = list(labels)
        _validators[key] = Draft202012Validator(schema)
    return _validators[key]


def _first_object(text: str) -> str | None:
    """The first balanced top-level {...} span, honouring JSON strings and escapes."""
    start = text.find("{")
    while start != -1:
        depth, in_string, escaped = 0, False, False
        for position in range(start, len(text)):
            char = text[position]
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return text[start:position + 1]
        start = text.find("{", start + 1)
    return None


def _match_label(value: Any, labels: Sequence[str]) -> str | None:
    if not isinstance(value, (str, int)):
        return None
    cleaned = str(value).strip().strip("()[]. ")
    if cleaned in labels:
        return cleaned
    # Case-insensitively only where that names one label (`a` is not `A` when both are offered).
    folded = [label for label in labels if label.casefold() == cleaned.casefold()]
    return folded[0] if len(folded) == 1 else None


def parse_json_answer(output: str, item: Item) -> JsonAnswer:
    labels = item.labels
    strict: str | None = None
    valid = False
    try:
        whole = json.loads(output.strip())
    except ValueError:
        whole = None
    if whole is not None and not answer_validator(labels).is_valid(whole):
        whole = None
    if whole is not None:
        valid, strict = True, whole["answer"]
        return JsonAnswer(valid, strict, strict, "strict")
    lenient, method = _lenient(output, item)
    return JsonAnswer(valid, strict, lenient, method)


_ANSWER_KEY = re.compile(r"""["']?answer["']?\s*[:=]\s*["'(\[]?\s*([A-Za-z0-9]{1,4})\b""", re.IGNORECASE)
# A label opening the reply, closed by a bracket, `.`, `)` or `:` or alone: "A. Warfarin", "(B)", "C".
# Not a word: "A patient like this..." and "I think..." are prose, not the answers A and I.
_LEADING_LABEL = re.compile(r"^\s*(?:[(\[]\s*([A-Za-z0-9]{1,4})\s*[)\]]|([A-Za-z0-9]{1,4})\s*(?:[).:]|$))")


def _lenient(output: str, item: Item) -> tuple[str | None, str | None]:
    labels = item.labels
    span = _first_object(output)
    if span is not None:
        try:
            parsed = json.loads(span)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            label = _match_label(parsed.get("answer"), labels)
            if label:
                return label, "json_object"
    match = _ANSWER_KEY.search(output)
    if match and _match_label(match.group(1), labels):
        return _match_label(match.group(1), labels), "answer_key"
    match = _LEADING_LABEL.match(output)
    if match and _match_label(match.group(1) or match.group(2), labels):
        return _match_label(match.group(1) or match.group(2), labels), "leading_label"
    # Whole words only: the option "no" is not in "Diagnosis uncertain" nor in "I do not know".
    hits = [o.label for o in item.options
            if re.search(rf"(?<!\w){re.escape(o.text)}(?!\w)", output, re.IGNORECASE)]
    if len(hits) == 1:
        return hits[0], "option_text"
    return None, None


def json_object_closed(text: str) -> bool:
    """Stop rule for generate mode: a top-level object has closed, or a line ended outside one."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return _first_object(stripped) is not None
    return "\n" in stripped.rstrip(" ") if stripped else False
