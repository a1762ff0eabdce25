"""Training: the loop (`loop.main`), its jitted steps, optimizer, checkpoints, early stopping, the metric log,
rebuilding a trained model from a workdir (`restore.load_run`), and the step benchmark (`bench`).

Submodules are imported on use: `ftjax.train.config` (the config blocks) stays light."""
