"""The hand-off between HTTP frontends and engines: ZeroMQ messages of a small JSON header and
raw array frames (``frames``, ``messages``), the frontend's side (``client``)."""
