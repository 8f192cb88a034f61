"""The dataset registry (fixtures/datasets/registry.toml): names, files, checksums, provenance.

Every entry is checked when the registry is read, so a typo in the registry is reported once,
by entry name, instead of surfacing later as a failed download or a missing file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from medgate.paths import fixtures_dir

LANGUAGES = ("en", "es")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEYS = {"description", "languages", "split", "converter", "bundled", "files", "license", "citation",
         "options"}


class UnknownDataset(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""  # KeyError would quote the message


class RegistryError(ValueError):
    """The registry file itself is wrong; the message names the entry and the field."""


@dataclass(frozen=True)
class UpstreamFile:
    path: str  # relative to the data directory (or to fixtures/datasets for bundled data); POSIX form
    sha256: str | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    languages: tuple[str, ...]
    split: str
    converter: str
    files: tuple[UpstreamFile, ...]
    bundled: bool = False
    license: str = ""
    citation: str = ""
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # converter arguments

    @property
    def language(self) -> str:
        return self.languages[0]

    @property
    def sampling_salt(self) -> str:
        """Twins `<base>-en` / `<base>-es` share the salt, so a seeded --limit picks the same questions."""
        for language in LANGUAGES:
            if self.name.endswith(f"-{language}"):
                return self.name[: -len(language) - 1]
        return self.name


def _check_path(where: str, path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise RegistryError(f"{where}: path must be a non-empty string")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise RegistryError(f"{where}: path {path!r} must be relative, in POSIX form, without '..'")
    return path


def _file(where: str, entry: Any, bundled: bool) -> UpstreamFile:
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: each file is a table {{ path, sha256, urls }}")
    path = _check_path(where, entry.get("path"))
    sha256 = entry.get("sha256")
    urls = entry.get("urls", [])
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256)):
        raise RegistryError(f"{where}: sha256 of {path} must be 64 lowercase hex digits")
    if not isinstance(urls, list) or not all(isinstance(u, str) and u.startswith("https://") for u in urls):
        raise RegistryError(f"{where}: urls of {path} must be a list of https:// addresses")
    if not bundled and (sha256 is None or not urls):
        raise RegistryError(f"{where}: upstream file {path} needs a sha256 and at least one url")
    return UpstreamFile(path=path, sha256=sha256, urls=tuple(urls))


def _spec(name: str, entry: Any) -> DatasetSpec:
    where = f"registry entry [{name}]"
    if not _NAME.match(name):
        raise RegistryError(f"{where}: names are lowercase letters, digits, '.', '_' and '-'")
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: must be a table")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise RegistryError(f"{where}: unknown keys {unknown}; known keys: {', '.join(sorted(_KEYS))}")
    for key in ("converter", "split", "license", "citation"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise RegistryError(f"{where}: {key} is required (a non-empty string)")
    languages = entry.get("languages")
    if not isinstance(languages, list) or not languages or not set(languages) <= set(LANGUAGES):
        raise RegistryError(f"{where}: languages must be a non-empty list drawn from {list(LANGUAGES)}")
    bundled = entry.get("bundled", False)
    if not isinstance(bundled, bool):
        raise RegistryError(f"{where}: bundled must be true or false")
    files = entry.get("files")
    if not isinstance(files, list) or not files:
        raise RegistryError(f"{where}: files must list at least one file")
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise RegistryError(f"{where}: options must be a table")
    return DatasetSpec(
        name=name,
        languages=tuple(languages),
        split=entry["split"],
        converter=entry["converter"],
        files=tuple(_file(where, f, bundled) for f in files),
        bundled=bundled,
        license=entry["license"],
        citation=entry["citation"],
        description=entry.get("description", ""),
        options=dict(options),
    )


def _check_shared_files(specs: dict[str, DatasetSpec]) -> None:
    """A file listed by several datasets (mmlu-medical and mmlu-anatomy) must be the same file."""
    seen: dict[str, tuple[str, str | None]] = {}
    for spec in specs.values():
        if spec.bundled:
            continue
        for upstream in spec.files:
            first = seen.setdefault(upstream.path, (spec.name, upstream.sha256))
            if first[1] != upstream.sha256:
                raise RegistryError(
                    f"registry entries [{first[0]}] and [{spec.name}] give {upstream.path} different sha256"
                )


@lru_cache(maxsize=None)
def registry(path: Path | None = None) -> dict[str, DatasetSpec]:
    source = path or fixtures_dir() / "datasets" / "registry.toml"
    try:
        with source.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise RegistryError(f"{source}: not valid TOML ({error})") from None
    try:
        specs = {name: _spec(name, entry) for name, entry in data.items()}
        _check_shared_files(specs)
    except RegistryError as error:
        raise RegistryError(f"{source}: {error}") from None
    return specs


def get_spec(name: str) -> DatasetSpec:
    known = registry()
    if name not in known:
        raise UnknownDataset(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(known))}")
    return known[name]
