"""Sweeps and ablations on Optuna (`ftjax sweep`), and choosing a base model (`ftjax select-base`).

Every trial is a normal `ftjax train` workdir, run as its own process; the study (trials, parameters, values,
validation curves) lives in Optuna's storage. config.py holds the `sweep` block, space.py the search space,
study.py the worker loop, trial.py one trial, report.py the tables, plots and best config, base.py select-base.
"""
