"""A model version's ONNX Runtime session (``contract.sessions``): warm-up, padding and splitting
around each run; the model repository."""
