"""Benchmarks of the pipeline against the limits of the machine it runs on (``make bench``)."""
