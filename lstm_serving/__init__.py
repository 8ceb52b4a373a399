"""A client for lstm-serving, and the ``lstm-serving`` command (``lstm_serving.cli``).

``from lstm_serving.client import Client`` needs only httpx and numpy (``pip install
lstm-serving[client]``): no torch, no ONNX Runtime.
"""
