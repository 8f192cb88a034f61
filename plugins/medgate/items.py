"""The item model: one clinical multiple-choice question, and loading/validating item files."""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from medgate.schemas import first_error, shown


class ItemError(ValueError):
    """An item file or record is malformed; the message names the file, line and problem."""


class ItemWarning(UserWarning):
    """An item file that loads but is probably not what its author meant (duplicate keys or questions)."""


@dataclass(frozen=True)
class Option:
    label: str
    text: str


@dataclass(frozen=True)
class Item:
    id: str
    dataset: str
    language: str
    question: str
    options: tuple[Option, ...]
    answer: str
    subject: str | None = None
    pair_id: str | None = None
    source: str | None = None
    # Perturbations may attach data that scoring needs (e.g. which option is the inserted NOTA).
    extras: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(option.label for option in self.options)

    @property
    def gold_index(self) -> int:
        return self.labels.index(self.answer)

    @property
    def gold_text(self) -> str:
        return self.options[self.gold_index].text


    def with_options(self, options: Iterable[Option], answer: str) -> Item:
        return replace(self, options=tuple(options), answer=answer)

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "dataset": self.dataset,
            "language": self.language,
            "question": self.question,
            "options": [asdict(option) for option in self.options],
            "answer": self.answer,
        }
        for key in ("subject", "pair_id", "source"):
            value = getattr(self, key)
            if value is not None:
                record[key] = value
        return record

    def content_hash(self) -> str:
        """Hash of what a model sees and is scored against (not provenance fields)."""
        return _content_hash(self)


@lru_cache(maxsize=1 << 16)  # every perturbation and prompt of an item asks again
def _content_hash(item: Item) -> str:
    payload = {
        "question": item.question,
        "options": [[o.label, o.text] for o in item.options],
        "answer": item.answer,
        "language": item.language,
    }
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_DATASET = re.compile(r"[a-z0-9][a-z0-9._-]*")
_LABEL = re.compile(r"[A-Za-z0-9]{1,4}")
_KEYS = frozenset({"id", "dataset", "language", "question", "options", "answer", "subject", "pair_id", "source"})
_OPTIONAL_TEXT = ("subject", "pair_id", "source")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BOM = b"\xef\xbb\xbf"


def _texts(record: dict[str, Any]) -> Iterable[tuple[str, str]]:
    for key in ("id", "dataset", "question", "answer", *_OPTIONAL_TEXT):
        if isinstance(record.get(key), str):
            yield key, record[key]
    for index, option in enumerate(record.get("options") or ()):
        for key in ("label", "text"):
            if isinstance(option, dict) and isinstance(option.get(key), str):
                yield f"options/{index}/{key}", option[key]


def _lone_surrogate(record: dict[str, Any]) -> str | None:
    """The field holding a lone UTF-16 surrogate (JSON allows `"\\udc80"`; UTF-8 cannot encode it)."""
    for where, text in _texts(record):
        if _SURROGATE.search(text):
            return where
    return None


def _plainly_valid(record: Any) -> bool:
    """A fast check that accepts only what item.schema.json accepts (tested against it).

    Validating thousands of items with jsonschema cost more than the rest of collection; a record
    this check does not accept goes through jsonschema, which decides and explains.
    """
    if type(record) is not dict or not _KEYS.issuperset(record):
        return False
    identifier, dataset, question, answer = (record.get(k) for k in ("id", "dataset", "question", "answer"))
    if not (type(identifier) is str and _ID.fullmatch(identifier) and type(dataset) is str
            and _DATASET.fullmatch(dataset) and record.get("language") in ("en", "es")
            and type(question) is str and not question.isspace() and question and type(answer) is str):
        return False
    if any(key in record and type(record[key]) is not str for key in _OPTIONAL_TEXT):
        return False
    options = record.get("options")
    if type(options) is not list or not 3 <= len(options) <= 6:
        return False
    return all(
        type(o) is dict and len(o) == 2 and type(o.get("label")) is str and _LABEL.fullmatch(o["label"])
        and type(o.get("text")) is str and o["text"] != "" and not o["text"].isspace()
        for o in options
    )


def item_from_dict(record: Any) -> Item:
    """Validate one record against item.schema.json plus the rules a schema cannot say."""
    if not _plainly_valid(record):
        problem = first_error("item", record)
        if problem:
            raise ItemError(problem)
    surrogate = _lone_surrogate(record)
    if surrogate is not None:
        raise ItemError(f"{surrogate}: holds a lone surrogate (a \\ud800-\\udfff escape without its pair), which "
                        "no UTF-8 text can hold")
    labels = [option["label"] for option in record["options"]]
    if len(set(labels)) != len(labels):
        raise ItemError(f"options: duplicate labels {shown(labels)}")
    if record["answer"] not in labels:
        raise ItemError(f"answer: {shown(record['answer'])} is not one of the option labels {shown(labels)}")
    return item_from_valid_dict(record)


def item_from_valid_dict(record: dict[str, Any]) -> Item:
    """An item from a record already known to be valid (validated here, or read back from a checked cache)."""
    return Item(
        id=record["id"],
        dataset=record["dataset"],
        language=record["language"],
        question=record["question"],
        options=tuple(Option(o["label"], o["text"]) for o in record["options"]),
        answer=record["answer"],
        subject=record.get("subject"),
        pair_id=record.get("pair_id"),
        source=record.get("source"),
    )


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        keys = [key for key, _ in pairs]
        raise _DuplicateKey(next(key for index, key in enumerate(keys) if key in keys[:index]))
    return record


def _parse_line(raw: bytes, where: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ItemError(f"{where}: not UTF-8 ({error.reason} at byte {error.start + 1} of the line)") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as duplicate:
        warnings.warn(f"{where}: key {str(duplicate)!r} appears twice; the last value is used", ItemWarning,
                      stacklevel=4)
        return json.loads(text)
    except json.JSONDecodeError as error:
        # Some of json's messages end in "at" ("Unterminated string starting at"), some do not.
        raise ItemError(f"{where}: not valid JSON ({error.msg.removesuffix(' at')} at column {error.colno})") \
            from None
    except RecursionError:
        raise ItemError(f"{where}: not an item (JSON nested too deeply)") from None


def load_jsonl(path: Path, expected_dataset: str | None = None) -> list[Item]:
    """Load and validate an item file; any bad line stops with `file:line: problem`.

    Read as bytes so that a line that is not UTF-8 is named; a UTF-8 byte-order mark (which Windows
    editors write) is skipped.
    """
    items: list[Item] = []
    seen: dict[str, int] = {}
    questions: dict[tuple[str, str], str] = {}
    try:
        handle = path.open("rb")
    except OSError as error:
        raise ItemError(f"{path}: cannot read item file ({error.strerror})") from error
    with handle:
        for line_number, line in enumerate(handle, start=1):
            if line_number == 1:
                line = line.removeprefix(_BOM)
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            record = _parse_line(line, where)
            try:
                item = item_from_dict(record)
            except ItemError as error:
                raise ItemError(f"{where}: {error}") from None
            except RecursionError:
                raise ItemError(f"{where}: not an item (JSON nested too deeply)") from None
            if expected_dataset is not None and item.dataset != expected_dataset:
                raise ItemError(f"{where}: dataset is {item.dataset!r}, expected {expected_dataset!r}")
            if item.id in seen:
                raise ItemError(f"{where}: duplicate id {shown(item.id)} (first on line {seen[item.id]})")
            seen[item.id] = line_number
            asked = (item.language, " ".join(item.question.split()).casefold())
            if asked in questions:
                warnings.warn(f"{where}: item {item.id!r} asks the same question as item {questions[asked]!r} "
                              "(its cases count twice in every metric)", ItemWarning, stacklevel=2)
            questions.setdefault(asked, item.id)
            items.append(item)
    if not items:
        raise ItemError(f"{path}: no items")
    return items


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
