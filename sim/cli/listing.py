"""``racetrack strategies``, ``scenarios`` and ``invariants``: what is built in, one line each.

Each command imports only what it lists (these answer at once: ``benchmarks/cli_startup.py``)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("strategies", help="list the built-in strategies")
    p.set_defaults(func=cmd_strategies)
    p = sub.add_parser("scenarios", help="list the bundled scenarios")
    p.add_argument("--params", action="store_true", help="print every scenario parameter with its default (Markdown)")
    p.set_defaults(func=cmd_scenarios)
    p = sub.add_parser("invariants", help="list the invariants and their IDs")
    p.set_defaults(func=cmd_invariants)


def cmd_strategies(args: argparse.Namespace) -> int:
    from tracker.strategies import BUILTIN, load_strategy

    for name in BUILTIN:
        print(f"{name:<12} {load_strategy(name).summary}")
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    import scenarios

    if args.params:
        from sim.engine.scenario import format_params_markdown

        print(format_params_markdown())
        return 0
    for name in scenarios.names():  # the descriptions only: the files are validated when run
        print(f"{name:<20} {scenarios.description(name)}")
    return 0


def cmd_invariants(args: argparse.Namespace) -> int:
    from sim.judge.catalog import SUMMARIES  # not the checkers (and the history they read)

    for id, summary in SUMMARIES.items():
        print(f"{id:<20} {summary}")
    return 0
