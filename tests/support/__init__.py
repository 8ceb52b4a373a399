"""What the test modules share that is neither a test nor a fixture: oracles, data builders and
process helpers. Test modules import the code under test, libraries and ``tests.support``, never
another test module or a conftest; fixtures live in the ``conftest.py`` files.

* ``numpy_tf_rnn``: independent float64 numpy references for the TF 1.x RNN formulas
  (``tests/models``); nothing in it imports ``models``.
* ``tf1_shipped``: the TF 1.x checkpoints shipped in ``tests/data/tf1`` and their recorded outputs;
  ``tf1_bundles``: synthetic TF 1.x checkpoints written byte by byte (``tests/tf1_checkpoint``,
  ``tests/export/test_from_tf.py``).
* ``tiny_repository``: what the shared ``model_repository`` fixture exports, and the service's
  settings over it; ``asgi``: an app reached over its ASGI interface; ``pools``: the load
  tester's request pools for the tiny model (``tests/loadtest``, ``tests/bench``).
* ``servers``: ``python -m service`` as a real process on a free port, and what a test reads
  back from one (``tests/export``, ``tests/loadtest``, ``tests/service``); ``wide_model``: a
  model slow enough to keep a queue, and the load that fills it (``tests/service``).
* ``service_app``: the service's app reached over ASGI, and a real runtime held at a gate;
  ``ort_reference``: each sequence run alone through in-process ORT, what the service must
  answer; ``fake_runtime``: a fake runtime and a batcher over it
  (``tests/service/engine/batching``); ``v2_bodies``: V2 request bodies in JSON (``tests/service``).
* ``deploy``: the Dockerfile, compose files and ``.dockerignore`` read for ``tests/deploy``;
  ``constraints``: pip constraints files read back as pins (``tests/deploy``,
  ``tests/test_readme.py``).
"""
