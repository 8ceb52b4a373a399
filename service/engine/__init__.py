"""The engine: one process per device holding the models' sessions and batchers, fed by the HTTP
frontends over the hand-off (``server``; the process around it: ``process``)."""
