"""Bundled scenario files (TOML), one per behaviour; found by ``sim.engine.scenario.load`` by name."""
