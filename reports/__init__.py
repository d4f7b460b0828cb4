"""Reports: turn result tables and traces into Markdown/HTML, tables and plots. Reads results;
never runs simulations (imports neither SimPy nor the world)."""
