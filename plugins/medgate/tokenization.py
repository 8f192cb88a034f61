"""Tokenizer and chat-template rendering without transformers.

The ONNX Runtime path must start fast and run where only onnxruntime is installed, so it reads a
checkpoint's `tokenizer.json` with the `tokenizers` library and renders chat templates with jinja2
the way transformers does (`apply_chat_template`). The torch reference backend uses the same class,
so both backends see identical token ids.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medgate.checkpoint_files import (
    MAX_TEMPLATE_BYTES,
    CheckpointError,
    read_checkpoint_json,
    read_checkpoint_text,
)
from medgate.prompts import RenderedPrompt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# Chat templates that print the date make prompts differ from day to day, which would break prompt
# hashes, the prediction cache and report diffs; medgate renders them with this fixed date.
FIXED_TEMPLATE_DATE = "2026-01-01"
# A chat template is code from the checkpoint folder: a loop that never ends or a prompt of
# gigabytes must stop the run with the template named, not hang it. Real templates render a
# prompt in well under a millisecond and add a few hundred characters to it.
RENDER_SECONDS = 10.0
MAX_RENDERED_CHARS = 1 << 22


class TokenizerError(RuntimeError):
    pass


class TemplateRenderError(TokenizerError):
    """The chat template raised while rendering (`raise_exception`, an undefined name, 1/0, ...)."""


PROBE_QUESTION = "Which vitamin deficiency causes scurvy?"


def _roles(messages: Sequence[Mapping[str, str]]) -> str:
    return "a " + " + ".join(message["role"] for message in messages) + " message"


class _RenderTimeout(Exception):
    pass


@dataclass(frozen=True)
class EncodedChoice:
    """A prompt and the continuation token ids of each option, ready for scoring."""

    prompt_ids: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]
    boundary_merges: int  # continuations whose tokens merged with the prompt's last token


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


class TextTokenizer:
    def __init__(self, directory: Path) -> None:
        self._path = directory / "tokenizer.json"
        if not self._path.is_file():
            raise TokenizerError(f"{directory} has no tokenizer.json (a fast tokenizer is required)")
        self._directory = directory
        self._config = read_checkpoint_json(directory, "tokenizer_config.json")
        self.bos_token = _token_text(self._config.get("bos_token"))
        self.eos_token = _token_text(self._config.get("eos_token"))
        self.chat_template, self.template_source = _chat_template(directory, self._config)
        self._compiled_template: Any = None

    # Loading a large vocabulary (Llama 3's tokenizer.json is 9 MB) takes a noticeable part of a
    # second per worker; a run served from the prediction cache only renders prompt text, so the
    # vocabulary and what depends on it load on first use.
    @cached_property
    def _tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        text = read_checkpoint_text(self._directory, "tokenizer.json")  # CheckpointError names the file
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as error:  # the tokenizers library raises a bare Exception for a malformed file
            raise TokenizerError(f"{self._path}: not a tokenizer the tokenizers library reads ({error})") from None
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return tokenizer

    @cached_property
    def eos_token_ids(self) -> frozenset[int]:
        return self._eos_ids(self._directory)

    @cached_property
    def pad_token_id(self) -> int:
        return self._pad_id(self._config)

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def _eos_ids(self, directory: Path) -> frozenset[int]:
        ids: set[int] = set()
        if self.eos_token is not None:
            token_id = self._tokenizer.token_to_id(self.eos_token)
            if token_id is not None:
                ids.add(token_id)
        generation = read_checkpoint_json(directory, "generation_config.json").get("eos_token_id")
        if isinstance(generation, int):
            ids.add(generation)
        elif isinstance(generation, list):
            ids.update(int(value) for value in generation)
        return frozenset(ids)

    def _pad_id(self, config: dict[str, Any]) -> int:
        for candidate in (_token_text(config.get("pad_token")), self.eos_token):
            if candidate is not None and self._tokenizer.token_to_id(candidate) is not None:
                return int(self._tokenizer.token_to_id(candidate))
        return 0

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return [list(encoding.ids) for encoding in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=True))

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    # -- prompt text -------------------------------------------------------------------------------

    @property
    def uses_chat_template(self) -> bool:
        return self.chat_template is not None

    def prompt_text(self, prompt: RenderedPrompt) -> str:
        """The exact text given to the tokenizer: chat-formatted where the model has a template."""
        if self.chat_template is None:
            return prompt.as_plain_text()
        if not prompt.system:
            return self._render_chat([{"role": "user", "content": prompt.user}])
        if self.refuses_system_messages:
            # As a user of such a model would: the instruction opens the user's message.
            return self._render_chat([{"role": "user", "content": f"{prompt.system}\n\n{prompt.user}"}])
        return self._render_chat([{"role": "system", "content": prompt.system},
                                  {"role": "user", "content": prompt.user}])

    @cached_property
    def refuses_system_messages(self) -> bool:
        """Whether the chat template raises on a system message while it renders a user message alone
        (Gemma's). Decided by rendering, so every worker folds system text the same way."""
        if self.chat_template is None:
            return False
        try:
            self._render_chat([{"role": "system", "content": "Answer briefly."},
                               {"role": "user", "content": PROBE_QUESTION}])
        except TemplateRenderError:
            self._render_chat([{"role": "user", "content": PROBE_QUESTION}])  # refused alone too: raises
            return True
        return False

    def continuation_text(self, continuation: str) -> str:
        # After a chat template's assistant header the answer starts the message: no leading space.
        return continuation.lstrip() if self.chat_template is not None else continuation

    def encode_prompt(self, text: str) -> list[int]:
        # A rendered chat template already holds its special tokens (as transformers' apply_chat_template).
        return self.encode(text, add_special_tokens=self.chat_template is None)

    def encode_choice(self, prompt: str, continuations: Sequence[str]) -> EncodedChoice:
        """Encode prompt+continuation together and split at the prompt's length (lm-eval's rule).

        Re-encoding a long prompt once per option dominated the cost of a case, so each continuation
        is encoded after the prompt's last words only (cut at whitespace), which gives the same ids
        whenever that tail tokenizes exactly as the end of the whole prompt does (checked; otherwise
        the whole prompt is used). When a merge crosses the boundary, the jointly encoded prefix
        differs from the prompt alone; then the continuation is encoded on its own and counted.
        """
        prompt_ids = self.encode_prompt(prompt)
        context, context_ids, special = prompt, prompt_ids, self.chat_template is None
        tail = _whitespace_tail(prompt)
        if tail is not None:
            tail_ids = self.encode(tail, add_special_tokens=False)
            if tail_ids and prompt_ids[-len(tail_ids):] == tail_ids:
                context, context_ids, special = tail, tail_ids, False
        if context is prompt:
            joint = self.encode_batch([context + c for c in continuations], add_special_tokens=special)
        else:  # short strings: the batch call's thread pool costs more than it saves
            joint = [self.encode(context + c, add_special_tokens=False) for c in continuations]
        merges = 0
        encoded: list[tuple[int, ...]] = []
        n = len(context_ids)
        for continuation, ids in zip(continuations, joint):
            if ids[:n] == context_ids and len(ids) > n:
                encoded.append(tuple(ids[n:]))
            else:
                merges += 1
                encoded.append(tuple(self.encode(continuation, add_special_tokens=False)))
        return EncodedChoice(tuple(prompt_ids), tuple(encoded), merges)

    def check_template(self) -> None:
        """Render a short prompt, with and without a system message, so that a template that fails, hangs,
        floods or leaves out the question is refused before any case runs."""
        if self.chat_template is None:
            return
        rendered = self._render_chat([{"role": "user", "content": PROBE_QUESTION}])
        if PROBE_QUESTION not in rendered:
            raise TokenizerError(f"{self.template_source}: the chat template leaves out the message's content "
                                 f"(rendered {rendered[:80]!r}); every prompt would be the same")
        self.refuses_system_messages  # noqa: B018 - renders the system-message shape, or raises

    def _render_chat(self, messages: list[dict[str, str]]) -> str:
        import jinja2

        if self._compiled_template is None:
            try:
                self._compiled_template = _compile_chat_template(str(self.chat_template))
            except jinja2.TemplateError as error:
                raise TokenizerError(f"{self.template_source}: not a valid chat template ({error})") from None
        special = {"bos_token": self.bos_token or "", "eos_token": self.eos_token or ""}
        pieces: list[str] = []
        size = 0
        try:
            with _time_limit(RENDER_SECONDS):
                for piece in self._compiled_template.generate(messages=messages, add_generation_prompt=True,
                                                              **special):
                    size += len(piece)
                    if size > MAX_RENDERED_CHARS:
                        raise TokenizerError(f"{self.template_source}: the chat template renders more than "
                                             f"{MAX_RENDERED_CHARS} characters for one prompt; refusing it")
                    pieces.append(piece)
        except _RenderTimeout:
            raise TokenizerError(f"{self.template_source}: rendering one prompt took more than {RENDER_SECONDS:g} s "
                                 "(a loop that does not end?); refusing the chat template") from None
        except OverflowError as error:
            raise TokenizerError(f"{self.template_source}: {error}") from None
        except TokenizerError:
            raise
        except jinja2.TemplateError as error:  # raise_exception(...) in the template, an undefined name
            raise TemplateRenderError(f"{self.template_source}: the chat template failed to render "
                                      f"{_roles(messages)}: {error}") from None
        except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as error:
            raise TemplateRenderError(f"{self.template_source}: the chat template failed to render "
                                      f"{_roles(messages)}: {type(error).__name__}: {error}") from None
        return "".join(pieces)


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise _RenderTimeout after `seconds` (a real-time timer: only in the main thread, and only when
    no one else's timer is running, e.g. pytest-timeout's; elsewhere the size bounds still hold)."""
    usable = (threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
              and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0))
    if not usable:
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise _RenderTimeout()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


TAIL_CHARACTERS = 48


def _whitespace_tail(text: str) -> str | None:
    """The prompt's last words, starting at a whitespace so no word is cut; None for short prompts."""
    if len(text) <= 2 * TAIL_CHARACTERS:
        return None
    window = text[-TAIL_CHARACTERS:]
    for position, char in enumerate(window):
        if char.isspace() and position > 0:
            return window[position:]
    return None


def _chat_template(directory: Path, config: dict[str, Any]) -> tuple[str | None, str]:
    """The template text and where it came from (named in every error about it)."""
    jinja_file = directory / "chat_template.jinja"
    if jinja_file.exists() or jinja_file.is_symlink():
        return read_checkpoint_text(directory, jinja_file.name, MAX_TEMPLATE_BYTES), str(jinja_file)
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: use "default"
        named = {entry.get("name"): entry.get("template") for entry in template if isinstance(entry, dict)}
        template = named.get("default")
    source = f"{directory / 'tokenizer_config.json'} (chat_template)"
    if isinstance(template, str) and len(template) > MAX_TEMPLATE_BYTES:
        raise CheckpointError(f"{source}: a chat template of {len(template)} characters; refusing it")
    return (template if isinstance(template, str) else None), source


def _compile_chat_template(source: str) -> Any:
    """Compile as transformers does (sandboxed jinja2, trim/lstrip blocks, the same helpers)."""
    from datetime import datetime

    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTagIgnored(Extension):  # `{% generation %}` marks training spans; rendering ignores it
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
               separators: Any = None, sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        return datetime.fromisoformat(FIXED_TEMPLATE_DATE).strftime(fmt)

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        # `"x" * 10**12` or `9 ** 9 ** 9` runs in C, where no timer can stop it: bound it before.
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, int) and abs(right) > 1024:
                raise OverflowError(f"the chat template raises to the power {right}; refusing it")
            if operator == "*":
                sequence, count = (left, right) if isinstance(right, int) else (right, left)
                if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) \
                        and len(sequence) * count > MAX_RENDERED_CHARS:
                    raise OverflowError(f"the chat template builds a sequence of {len(sequence) * count} "
                                        "elements; refusing it")
            return super().call_binop(context, operator, left, right)

    environment = BoundedSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTagIgnored, loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    return environment.from_string(source)
