"""Bias audits: data representation, per-group and counterfactual fairness of a run, reports."""
