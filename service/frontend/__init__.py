"""The HTTP frontend: the FastAPI app (``app``), its routes and codecs (``api``), the API key
check (``auth``) and the uvicorn server that drains (``server``). It parses, validates and
encodes; the sequences themselves go to a ``Scheduler`` (``service.registry``)."""
