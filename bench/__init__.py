"""Benchmarks of the service against its ceilings and a baseline, and the GPU checks.

Commands (run from the checkout, as modules):

* ``python -m bench``: the suite (``bench.cli``): in-process ceilings, the service, the naive
  baseline and the HTTP ceiling under the same load; ``bench/results/{cpu,gpu}-<date>.*``;
* ``python -m bench.soak``: the overload soak; ``bench/results/soak-<date>.*``;
* ``python -m bench.gpu_check`` and ``bench/gpu_session.sh``: every check that needs a GPU;
* ``python -m bench.loop_stall``: the event loop's stalls while large bodies are decoded;
* ``python -m bench.naive_server`` and ``python -m bench.http_ceiling``: the two servers the
  suite compares the service with (started by ``bench.servers``).

Modules, by job: ``servers`` (the processes a run starts), ``load`` (the load it drives, from
``loadtest``'s clients), ``ceiling`` (in-process ORT and torch, through
``contract.sessions.create_session`` as the service opens ORT; ``cpu`` reading ``/proc/stat``),
``frontends`` (N HTTP frontends feeding one engine, against one process and the per-worker
model at one offered rate), ``handoff`` (the frontend-to-engine hand-off's CPU per request),
``analysis`` (ratios, padding, where the time goes, targets, the soak's phases), ``records``
(the typed records and their JSON), ``report`` and ``markdown`` (the results files). Commands
import these modules, never each other.
"""
