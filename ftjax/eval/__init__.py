"""Evaluation: the runner (`runner.evaluate_split`), evaluation items and few-shot prompts, teacher-forced
scoring, the baseline comparison, two-run comparisons and plots. Submodules are imported on use."""
