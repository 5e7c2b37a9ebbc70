"""Tools around the harness, not part of a run: ``bench`` (throughput against a bare PyTorch loop) and
its result files (``bench_report``), ``device_checks`` (does a device compute what the CPU computes)
and ``doctor`` with its dated report (``doctor_report``)."""
