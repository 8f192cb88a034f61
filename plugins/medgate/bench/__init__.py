"""`medgate bench`: medgate against a plain transformers loop and lm-evaluation-harness.

Every contender runs as its own process on the same items and the same prompt text (rendered once
by medgate), with the same left truncation, and is timed from start to exit: what a user waits for.
Each also reports the time of its evaluation phase (medgate: group predictions; the loop: the loop;
lm-eval: `evaluator.evaluate`). Predictions are compared item by item.
"""
