"""Reports: turn result tables and traces into Markdown/HTML, tables and plots. Reads results;
never runs simulations (imports neither SimPy nor the world).

``inputs`` reads and checks results files and traces; ``stats`` computes the tables (Wilson
intervals, pandas aggregations); ``plots`` draws the PNGs; ``verdict`` writes the sentences;
``compose`` puts them together and writes ``index.html``, ``report.md`` and ``summary.csv``.
"""
