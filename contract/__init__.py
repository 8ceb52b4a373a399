"""The model contract, written once: the graph's names and shapes (``names``), what the service
knows of a served model and the axis rules of its outputs (``spec``), the execution providers
(``providers``) and the one ONNX Runtime session factory (``sessions``).

``names`` and ``spec`` import neither ONNX Runtime nor torch: the HTTP codec processes, the load
tester and the exporter read them. ``providers`` and ``sessions`` import ONNX Runtime, never
torch. See ``docs/model-contract.md``.
"""
