"""Benchmarks of the pipeline against the limits of the machine it runs on (``make bench``).

``python -m benchmarks`` runs one benchmark (``__main__``). The modules, lowest first:

- ``dataset``: the simulated events a run produces, surveys included;
- ``meters``: CPU, memory and throughput meters reading ``/proc``;
- ``profile``: the pyinstrument profile of the projector, folded into categories;
- ``limits``: (a) and (b), the reading and writing limits the projector cannot beat;
- ``catchup``: (c) the projector catching up, in this process or as subprocesses;
- ``latency``: (e) end-to-end latency at a steady rate;
- ``runner``: the :class:`~benchmarks.runner.Bench` run: set-up, clean-up, every phase in turn;
- ``report``: RESULTS.md from a run's figures.
"""

from pathlib import Path

#: The checkout the benchmark runs in: its subprocesses start there, and the report cuts its
#: path off the file names it shows.
REPO = Path(__file__).resolve().parents[1]
