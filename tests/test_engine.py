"""The batching/scoring engine, against a small deterministic stand-in for a language model."""

import numpy as np
import pytest

from medgate.backends import prefix_runner
from medgate.backends.base import GenerateRequest, ScoreRequest
from medgate.backends.engine import BatchPolicy, Engine, left_pad, log_softmax, next_batch

VOCAB = 12


class FakeModel:
    """Logits at a position depend on that token, on how many real tokens precede it and on the sum of
    the real tokens so far (the context), so padding, truncation, position handling and key/value reuse
    mistakes all change the numbers. Its key/value states hold the token ids themselves."""

    def __init__(self, max_context: int = 64, fail_above: int | None = None, nan: bool = False) -> None:
        self.max_context = max_context
        self.pad_id = 0
        self.fail_above = fail_above
        self.nan = nan
        self.calls: list[int] = []
        self.kv_bytes_per_token = 8
        rng = np.random.default_rng(0)
        self.table = rng.normal(size=(VOCAB, VOCAB)).astype(np.float32)

    def _logits(self, token: int, position: int, total: int) -> np.ndarray:
        row = self.table[token] + 0.1 * position + 0.5 * self.table[total % VOCAB]
        return np.full(VOCAB, np.nan, np.float32) if self.nan else row

    def _call(self, rows: int) -> None:
        self.calls.append(rows)
        if self.fail_above is not None and rows > self.fail_above:
            raise RuntimeError("CUDA error: out of memory")

    def logits_at(self, ids, mask, index):
        self._call(ids.shape[0])
        positions = np.cumsum(mask, axis=1) - 1
        totals = np.cumsum(ids * mask, axis=1)
        return np.stack([[self._logits(ids[b, i], positions[b, i], totals[b, i]) for i in row]
                         for b, row in enumerate(index)])

    def start(self, ids, mask):
        last = ids.shape[1] - 1
        logits = self.logits_at(ids, mask, np.full((ids.shape[0], 1), last))[:, 0]
        return logits, (ids * mask).sum(axis=1)

    def step(self, state, next_ids, mask):
        totals = state + next_ids
        positions = mask.sum(axis=1) - 1
        logits = np.stack([self._logits(t, int(p), int(s)) for t, p, s in zip(next_ids, positions, totals)])
        return logits, totals

    def extend(self, ids, mask, past, index, keep_states):
        past_width = mask.shape[1] - ids.shape[1]
        self._call(ids.shape[0])
        held = np.zeros((ids.shape[0], past_width)) if past is None else past[0][:, 0, :, 0]
        whole = np.concatenate([held.astype(np.int64), ids], axis=1)
        positions = np.cumsum(mask, axis=1) - 1
        totals = np.cumsum(whole * mask, axis=1)
        logits = np.stack([[self._logits(whole[b, past_width + i], positions[b, past_width + i],
                                         totals[b, past_width + i]) for i in row] for b, row in enumerate(index)])
        states = whole[:, None, :, None].astype(np.float32)
        return logits, [states, states.copy()] if keep_states else []

    def decoding_state(self, past):
        return past[0][:, 0, :, 0].sum(axis=1).astype(np.int64)

    def reference(self, prompt, continuation):
        """Summed log-probability of `continuation` after `prompt`, computed one token at a time."""
        whole = list(prompt) + list(continuation)
        total = 0.0
        for offset, target in enumerate(continuation):
            position = len(prompt) - 1 + offset
            context = sum(whole[:position + 1])
            total += float(log_softmax(self._logits(whole[position], position, context))[target])
        return total


def requests():
    return [
        ScoreRequest((1, 2, 3), ((4,), (5,), (6,))),
        ScoreRequest((7, 8, 9, 10, 11, 2, 3), ((4,), (6,))),
        ScoreRequest((5,), ((4, 5), (6,), (7, 8, 9))),
        ScoreRequest((3, 3, 3, 3), ((1,), (2,))),
    ]


def test_scores_match_a_token_by_token_reference_in_the_callers_order():
    model = FakeModel()
    results = Engine(model).score(requests())
    for request, result in zip(requests(), results):
        expected = [model.reference(request.prompt_ids, c) for c in request.continuations]
        assert result.logprobs == pytest.approx(expected, abs=1e-5)
        assert result.truncated_tokens == 0 and not result.non_finite


def test_batch_size_does_not_change_scores():
    small = Engine(FakeModel(), BatchPolicy(token_budget=4)).score(requests())
    large = Engine(FakeModel(), BatchPolicy(token_budget=10_000)).score(requests())
    assert [r.logprobs for r in small] == [r.logprobs for r in large]


def test_single_token_continuations_take_one_forward_row_per_prompt():
    model = FakeModel()
    Engine(model, prefix_sharing=False).score([ScoreRequest((1, 2), ((3,), (4,), (5,), (6,)))])
    assert model.calls == [1]


def test_long_prompts_are_truncated_from_the_left_and_counted():
    model = FakeModel(max_context=4)
    prompt = (1, 2, 3, 4, 5, 6)
    result = Engine(model).score([ScoreRequest(prompt, ((7,), (8,)))])[0]
    assert result.truncated_tokens == 2
    assert result.logprobs[0] == pytest.approx(model.reference(prompt[2:], (7,)), abs=1e-5)


def test_out_of_memory_halves_the_budget_and_splits_the_batch():
    model = FakeModel(fail_above=1)
    policy = BatchPolicy(token_budget=1000, max_budget=4000)
    results = Engine(model, policy).score(requests())
    assert policy.token_budget < 1000 and policy.max_budget < 1000  # never grows back into the error
    assert [r.logprobs for r in results] == [r.logprobs for r in Engine(FakeModel()).score(requests())]


def test_budget_grows_while_passes_are_fast_up_to_its_ceiling():
    policy = BatchPolicy(token_budget=8, max_budget=64, latency_target=1.0)
    many = [ScoreRequest((1, 2, 3, 4), ((5,), (6,))) for _ in range(40)]
    model = FakeModel()
    Engine(model, policy, prefix_sharing=False).score(many)
    assert policy.token_budget == 64
    assert model.calls[0] == 2 and max(model.calls) == 16  # 8 then 64 tokens of 4-token rows
    slow = BatchPolicy(token_budget=8, max_budget=64, latency_target=0.0)
    Engine(FakeModel(), slow, prefix_sharing=False).score(many)
    assert slow.token_budget == 8


def test_other_errors_are_not_swallowed():
    class Broken(FakeModel):
        def logits_at(self, ids, mask, index):
            raise RuntimeError("shape mismatch")

        def extend(self, ids, mask, past, index, keep_states):
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        Engine(Broken()).score(requests())


def test_non_finite_scores_are_flagged():
    result = Engine(FakeModel(nan=True)).score(requests()[:1])[0]
    assert result.non_finite


def test_greedy_generation_stops_on_eos_rule_or_budget():
    model = FakeModel()
    engine = Engine(model)
    prompt = (1, 2, 3)
    free = engine.generate([GenerateRequest(prompt, 5)], frozenset(), lambda tokens: False)[0]
    assert free.stop_reason == "length" and len(free.token_ids) == 5
    expected, position, token, context = [], len(prompt) - 1, prompt[-1], sum(prompt)
    for _ in range(5):
        token = int(np.argmax(model._logits(token, position, context)))
        expected.append(token)
        position += 1
        context += token
    assert list(free.token_ids) == expected
    stopped = engine.generate([GenerateRequest(prompt, 5)], frozenset(), lambda tokens: len(tokens) == 2)[0]
    assert stopped.stop_reason == "stop" and stopped.token_ids == free.token_ids[:2]
    ended = engine.generate([GenerateRequest(prompt, 5)], frozenset({expected[1]}), lambda tokens: False)[0]
    assert ended.stop_reason == "eos" and ended.token_ids == free.token_ids[:1]


@pytest.mark.parametrize("sharing", [True, False])
def test_batched_generation_equals_one_at_a_time(sharing):
    prompts = [GenerateRequest((1, 2, 3), 4), GenerateRequest((5,), 6), GenerateRequest((9, 8, 7, 6, 5), 3)]
    together = Engine(FakeModel(), prefix_sharing=sharing).generate(prompts, frozenset(), lambda t: False)
    alone = [Engine(FakeModel(), prefix_sharing=sharing).generate([p], frozenset(), lambda t: False)[0]
             for p in prompts]
    assert together == alone


STEM = tuple(range(1, 11)) * 4  # 40 tokens that every variant below opens with


def variants():
    """Prompts as an item's perturbations make them: one long opening, then differing endings."""
    return [STEM + (3, 4, 5), STEM + (3, 4, 6), STEM + (7,), STEM + (3,), STEM, (2,) + STEM]


@pytest.mark.parametrize("budget", [4, 10_000])
def test_shared_prefixes_score_as_whole_prompts_and_compute_each_shared_token_once(budget):
    requests = [ScoreRequest(p, ((4,), (5,))) for p in variants()]
    requests += [ScoreRequest(p, ((4, 5), (6,), (7, 8, 9))) for p in variants()[:3]]
    model = FakeModel()
    shared = Engine(model, BatchPolicy(token_budget=budget))
    whole = Engine(FakeModel(), BatchPolicy(token_budget=budget), prefix_sharing=False)
    for request, result, unshared in zip(requests, shared.score(requests), whole.score(requests)):
        assert result.logprobs == pytest.approx([model.reference(request.prompt_ids, c)
                                                 for c in request.continuations], abs=1e-5)
        assert result.logprobs == pytest.approx(unshared.logprobs, abs=1e-6)
    assert shared.work["loglik"].presented == whole.work["loglik"].presented == whole.work["loglik"].computed
    # the 40-token opening of 11 rows (all but the one starting with 2) runs once
    assert shared.work["loglik"].computed < whole.work["loglik"].computed - 9 * 40


class RecordingModel(FakeModel):
    """Records each extend pass: its real new-token counts per row, its padded width, keep_states."""

    def __init__(self):
        super().__init__()
        self.passes = []

    def extend(self, ids, mask, past, index, keep_states):
        real = mask[:, mask.shape[1] - ids.shape[1]:].sum(axis=1)
        self.passes.append((real.tolist(), ids.shape[1], keep_states))
        return super().extend(ids, mask, past, index, keep_states)


def test_shared_passes_pad_no_segment_beyond_the_limit_and_leaves_skip_their_states():
    # Nine variants share a 40-token opening; one long prompt shares nothing with them. Batched by a
    # single mixed cost, the short endings were padded to the long prompt's width.
    long = tuple(11 - i % 10 for i in range(60))  # opens with 11: no other prompt does
    requests = [ScoreRequest(p, ((4,), (5,))) for p in variants()] + [ScoreRequest(long, ((4,), (5,)))]
    model = RecordingModel()
    results = Engine(model, BatchPolicy(token_budget=1024)).score(requests)
    whole = Engine(FakeModel(), prefix_sharing=False).score(requests)
    assert [r.logprobs for r in results] == [pytest.approx(w.logprobs, abs=1e-6) for w in whole]
    for real, width, _ in model.passes:
        assert prefix_runner.NEW_PADDING * min(real) >= width, (real, width)
    assert {keep for *_, keep in model.passes} == {True, False}  # shared nodes keep states, leaves do not
    assert model.passes[-1][2] is False


def test_padding_limits_for_own_segments_and_for_long_pasts_only():
    within = prefix_runner.within_padding
    assert within(20, 30, 500, 600)  # own segments padded by half, the past by a fifth
    assert not within(20, 31, 500, 600)
    assert not within(20, 30, 400, 600)  # a long past padded by half
    assert within(20, 30, 5, 64)  # a short past may be padded freely


def test_stale_past_buffer_contents_do_not_leak_into_scores(monkeypatch):
    layers = prefix_runner.PastBuffer.layers

    def stale(self, shapes, dtype):
        arrays = layers(self, shapes, dtype)
        for array in arrays:
            array.fill(np.nan)  # what an earlier pass (or fresh memory) may have left there
        return arrays

    monkeypatch.setattr(prefix_runner.PastBuffer, "layers", stale)
    requests = [ScoreRequest(p, ((4,), (5,))) for p in variants()]
    shared = Engine(FakeModel(), BatchPolicy(token_budget=4)).score(requests)
    whole = Engine(FakeModel(), prefix_sharing=False).score(requests)
    assert not any(r.non_finite for r in shared)
    assert [r.logprobs for r in shared] == [pytest.approx(w.logprobs, abs=1e-6) for w in whole]


def test_next_batch_with_a_padded_cost_stops_where_the_cost_exceeds_the_budget():
    lengths = [5, 1, 3, 8]
    order = [3, 0, 2, 1]

    def padded(batch):
        return len(batch) * max(lengths[i] for i in batch) + 10 * len(batch)

    assert next_batch(order, 0, lengths, token_budget=40, max_batch=8, padded=padded) == [3, 0]
    assert next_batch(order, 2, lengths, token_budget=40, max_batch=8, padded=padded) == [2, 1]
    assert next_batch(order, 0, lengths, token_budget=5, max_batch=8, padded=padded) == [3]  # one row always runs


def test_shared_prefill_generates_as_whole_prompts():
    requests = [GenerateRequest(p, 5) for p in variants()]
    shared = Engine(FakeModel(), BatchPolicy(token_budget=16))
    whole = Engine(FakeModel(), prefix_sharing=False)
    assert shared.generate(requests, frozenset(), lambda t: False) == \
        whole.generate(requests, frozenset(), lambda t: False)
    assert shared.work["generate"].computed == shared.work["generate"].presented - 4 * 39  # 5 rows, 39 shared


def test_short_common_openings_are_not_split_off():
    from medgate.backends.prefix_tree import plan_prefixes

    short = plan_prefixes([(1, 2, 3, 4), (1, 2, 3, 5), (1, 2, 9)])
    assert short.nodes == [] and short.row_start == [0, 0, 0]
    long = plan_prefixes([STEM + (1, 2), STEM + (1, 3), STEM + (4,), (5,)])
    assert [(n.start, n.end, n.parent) for n in long.nodes] == [(0, 40, None)]  # (1,) more for two: not worth it
    assert long.row_parent[3] is None and long.row_start[3] == 0
    assert all(long.row_start[i] == 40 for i in range(3))


def test_left_pad_and_next_batch():
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    lengths = [5, 1, 3, 8]
    order = [3, 0, 2, 1]
    assert next_batch(order, 0, lengths, token_budget=10, max_batch=8) == [3]
    assert next_batch(order, 1, lengths, token_budget=10, max_batch=8) == [0, 2]
    assert next_batch(order, 3, lengths, token_budget=10, max_batch=8) == [1]


def test_log_softmax_upcasts_half_precision():
    logits = np.array([[60000.0, 0.0, -60000.0]], dtype=np.float16)
    out = log_softmax(logits)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert np.exp(out).sum() == pytest.approx(1.0)
