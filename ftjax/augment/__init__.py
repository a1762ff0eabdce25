"""Synthetic examples from seed rows (`ftjax augment`): model generation (generate.py) and rule-based noise
(rules.py), then validation filters (validate.py) before anything reaches a training set."""
