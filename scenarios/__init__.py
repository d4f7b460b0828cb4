"""Bundled scenario files (TOML), one per behaviour; found by ``sim.scenario.load`` by name."""
