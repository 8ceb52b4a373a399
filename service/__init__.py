"""The serving microservice: FastAPI + length-aware dynamic batching + ONNX Runtime.

Imports point one way: ``api`` (routes, wire formats, validation, the codec processes) →
``batching`` (the length-aware batcher) → ``runtime`` (a model version's session: pad, run,
split; the model repository), all on the shared ``contract`` package (the graph's names, the
``ModelSpec``, providers and the one session factory). Around them: ``app``
(``create_app(settings)``), ``registry`` (the served models, each with its batcher),
``settings``, ``metrics``, ``auth``, ``errors``, ``logs``; ``server`` (one process's uvicorn
with a counted drain) and ``workers`` (``--workers N``) run it, and ``python -m service``
starts them. Nothing here imports torch, ``models`` or ``export``.
"""

__version__ = "0.1.0"
