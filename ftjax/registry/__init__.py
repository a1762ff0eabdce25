"""The model registry on MLflow, and re-fine-tuning that promotes only a measured improvement."""
