"""Prefect orchestration only: flows compose the plain steps of :mod:`pipeline` and :mod:`qc`.

- :mod:`flows.film`     the per-film composition of steps (plain Python, no Prefect)
- :mod:`flows.migrate`  the ``migrate-batch`` flow: discover, process, QC, push, verify, report
"""
