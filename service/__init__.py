"""The serving microservice: FastAPI + length-aware dynamic batching + ONNX Runtime."""

__version__ = "0.1.0"
