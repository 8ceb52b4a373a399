"""ONNX Runtime sessions: provider choice, warm-up, padding and splitting around each run."""
