"""The harness: world model, clocks, drivers, history, invariants, runs and sweeps, and the
``racetrack`` command line. Imports ``tracker``; ``tracker`` never imports this."""

#: The version pyproject.toml declares (its ``[project] version`` is the one to edit; a test fails
#: when this copy differs). A constant, so ``racetrack --version`` needs no metadata lookup.
__version__ = "0.1.0"
