"""`medgate bench`: medgate against a plain transformers loop and lm-evaluation-harness.

Every contender runs as its own process on the same cases (items x perturbations x prompts) and the
same prompt text (prepared once by medgate's preparation.py), with the same left truncation, and is
timed from start to exit: what a user waits for. Each also reports the time of its evaluation phase
(medgate: group predictions; the loop: the loop; lm-eval: `evaluator.evaluate`). Predictions are
compared case by case, between every pair of contenders.
"""
