"""One way from an item and a prompt template to what the model sees: render -> chat text -> token ids.

The Predictor, `medgate parity`, the benchmark's shared workload and the tiny model's training data
all prepare prompts here, so that they cannot drift apart. Text comes first and token ids only on
request: a prediction-cache hit is keyed by the text and never tokenizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from medgate.backends.base import GenerateRequest, ScoreRequest
from medgate.items import Item
from medgate.prompts import continuation_text, render, template_for
from medgate.tokenization import TextTokenizer


@dataclass(frozen=True)
class PreparedPrompt:
    text: str  # the exact text given to the tokenizer (chat-formatted where the model has a template)
    template_hash: str
    mode: str  # "loglik" or "generate"
    continuations: tuple[str, ...]  # loglik: one per label, in the item's order; generate: none


@dataclass(frozen=True)
class EncodedPrompt:
    request: ScoreRequest | GenerateRequest
    boundary_merges: int  # continuations whose first token merged with the prompt's end (encoded alone)


def prepare(tokenizer: TextTokenizer, prompt: str, item: Item, answers: tuple[str, ...] | None = None) -> PreparedPrompt:
    """`item` under template `prompt`; `answers` sets the continuations (in either mode) instead of every
    label in loglik mode and none in generate mode (the tiny model trains on the gold answer alone)."""
    template = template_for(prompt, item.language)
    text = tokenizer.prompt_text(render(template, item))
    if answers is None and template.mode != "loglik":
        return PreparedPrompt(text, template.content_hash, template.mode, ())
    labels = item.labels if answers is None else answers
    continuations = tuple(tokenizer.continuation_text(continuation_text(template, label)) for label in labels)
    return PreparedPrompt(text, template.content_hash, template.mode, continuations)


def encode(tokenizer: TextTokenizer, prepared: PreparedPrompt, max_new_tokens: int) -> EncodedPrompt:
    """The token-level request: prompt and continuation ids for scoring, prompt ids for generation."""
    if prepared.mode == "loglik":
        encoded = tokenizer.encode_choice(prepared.text, prepared.continuations)
        return EncodedPrompt(ScoreRequest(encoded.prompt_ids, encoded.continuations), encoded.boundary_merges)
    return EncodedPrompt(GenerateRequest(tuple(tokenizer.encode_prompt(prepared.text)), max_new_tokens), 0)
