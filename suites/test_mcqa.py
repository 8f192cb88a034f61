"""Clinical multiple-choice QA: one case per item x perturbation x prompt (x mode).

The medgate plugin parametrizes `mcqa_case` from --dataset, --perturbations, --prompts and --mode.
A case passes when the model produced a usable answer; whether the answer was right is recorded
on the case and measured, and the gates in test_gates.py decide the release.
"""


def test_mcqa(mcqa_case):
    mcqa_case.check()
