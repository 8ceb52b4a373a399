"""HTTP layer: routes, wire formats and input validation. Delegates to batching/.

``v1`` and ``v2`` are the two wire formats' routes; ``routes`` declares the inference endpoints
once (``InferenceRoute``), for FastAPI and for the ``fast_path`` in front of it; ``inference``
admits, decodes and runs a request through the batcher; ``bodies`` reads bodies within limits;
``context`` is what routes get from the app; ``responses`` writes JSON and renders every error;
``docs`` is the OpenAPI text. The codecs (``validation``, ``v2_codec``) import none of these:
they also run in the codec processes (``offload``).
"""
