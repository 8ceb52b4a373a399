"""A load tester for the LSTM service (``python -m loadtest --help``).

Closed loop (N concurrent clients), open loop (Poisson arrivals at a target rate) and concurrency
sweeps over the simple JSON API (``/v1``), V2 JSON and V2 binary; pre-encoded request bodies,
several client processes, a report with the server's own figures read from ``/metrics``, JSON
results and PNG plots, and a check of sampled responses against in-process ONNX Runtime.

Modules: ``distributions`` (length specs), ``payloads`` (request encoders and response
decoders), ``engine`` (the client processes), ``stats`` (percentiles, summaries),
``prom`` (``/metrics`` parsing and deltas), ``verify``, ``plots``, ``report``, ``cli``.
"""
