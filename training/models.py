"""Training jobs and the model registry: added by the training backend issue."""
