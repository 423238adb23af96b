"""Accuracy measurement pieces used by the `accuracy` stage (runners/stages/accuracy.py).

plan       - one AccuracyPlan: the e2e YAML's evaluation settings and every lm-eval argv come from it
ci         - what the target repo's CI check passes to `lm_eval.simple_evaluate` for a given YAML
results    - lm-eval results / samples files -> metrics with stderr
checks     - reproducibility (RTOL 0.05, as the target's CI) and plausibility (chance level, reference)
env        - lm-eval's environment: offline only when the operator says so, dataset cache, hub mirrors
"""
