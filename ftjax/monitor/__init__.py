"""Production monitoring: input drift against the training data, and task quality over time."""
