"""Live mode: the strategies' handlers on a real BullMQ queue, real concurrency and a real
PostgreSQL, judged like a simulated run; and calibration of the simulator against it.

Sits beside ``sim.search`` (above ``sim.runs``, below ``reports`` and the CLI). The only package
of ``sim`` that imports asyncio, redis or bullmq, and the only one that reads the wall clock (each
read marked ``# wall-clock ok``).
"""
