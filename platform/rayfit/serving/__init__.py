"""A finished run's model for use outside rayfit: an MLflow pyfunc model that takes raw rows, and
file exports (ONNX, TorchScript, SavedModel)."""
