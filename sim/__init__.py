"""The harness: world model, clocks, drivers, history, invariants, runs and sweeps, and the
``racetrack`` command line. Imports ``tracker``; ``tracker`` never imports this."""
