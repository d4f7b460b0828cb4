"""The system under test: the job_status table, the operations a handler may ask for,
the backends that execute them (in-memory model, PostgreSQL) and the strategies.

Imports nothing from ``sim``: the arrow points ``sim -> tracker``.
"""
