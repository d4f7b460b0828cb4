"""The command reference, docs/commands.md, written from the argument parser itself.

``python -m sim.cli.reference > docs/commands.md`` regenerates it; a test fails when the page and
the parser disagree. Only ``build_parser()`` and argparse's action objects are read, so it keeps
working however the commands are spread over modules. Nothing machine-dependent is printed: a help
text's ``%(default)s`` (e.g. the number of cores) is rendered as a phrase, not this machine's value.

May import: argparse, ``sim.cli`` (for ``build_parser``).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

REGENERATE = "python -m sim.cli.reference > docs/commands.md"
MACHINE_DEFAULT = "*as on the machine that runs it*"

# The page that explains each command beyond its options.
SEE_ALSO = {
    "run": "[the README](../README.md#one-run-one-race), [postgres.md](postgres.md)",
    "sweep": "[scaling.md](scaling.md), [scenarios.md](scenarios.md#grids---grid), [results.md](results.md), "
    "[reports.md](reports.md), [postgres.md](postgres.md)",
    "check": "[scenarios.md](scenarios.md#expectations-expect), [scaling.md](scaling.md)",
    "explore": "[traces.md](traces.md#searching-racetrack-explore)",
    "replay": "[traces.md](traces.md#replaying-racetrack-replay)",
    "export": "[traces.md](traces.md#exporting-racetrack-export)",
    "report": "[reports.md](reports.md)",
    "strategies": "[strategies.md](strategies.md)",
    "scenarios": "[scenarios.md](scenarios.md)",
    "invariants": "[invariants.md](invariants.md)",
}

HEADER = f"""# Commands

<!-- Generated from the argument parser by `{REGENERATE}`; do not edit by hand. -->

Every command and every option of `racetrack`, as `racetrack COMMAND --help` lists them.
`racetrack --version` prints the installed version.

Exit codes everywhere: **0** the command did its job and no invariant it judges was violated,
**1** a violation was found where the command judges, **2** bad input or an unusable environment
(one line on stderr naming the file, field or value and what is allowed; never a traceback), also
a strategy whose handler crashed or ran away (the line names the handler, its file and line),
**3** an internal error, a bug in racetrack (one line and the path of a log with the traceback),
**130** interrupted (Ctrl-C; a sweep says how to resume). **143** terminated (SIGTERM): ended as on Ctrl-C, with the same cleanup.
"""


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every subcommand, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def options(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The arguments a user passes (positionals first, as argparse lists them), without --help."""
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            yield action


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every ``--flag`` (and ``-o``) the command accepts."""
    return {s for action in options(parser) for s in action.option_strings}


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return "|".join(str(c) for c in action.choices)
    return str(action.metavar or action.dest.upper())


def _argument(action: argparse.Action) -> str:
    value = _value(action)
    if not action.option_strings:
        name = str(action.metavar or action.dest).upper()
        return {"*": f"[{name}...]", "+": f"{name} [{name}...]", "?": f"[{name}]"}.get(str(action.nargs), name)
    flags = ", ".join(action.option_strings)
    return f"{flags} {value}" if value else flags


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:  # argparse's own expansion, minus anything that depends on this machine
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        params.update(prog=prog, default=MACHINE_DEFAULT)
        text = text % params
    notes = []
    if action.required and action.option_strings:
        notes.append("required")
    if action.nargs is not None and action.nargs not in (0, "?", "*", "+") and action.option_strings:
        notes.append(f"takes {action.nargs} values")
    if isinstance(action, argparse._AppendAction):
        notes.append("repeatable")
    return " ".join([text, *(f"({n})" for n in notes)]).strip()


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell: pipes escaped, ``<pid>`` not taken for HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    positionals = [_argument(a) for a in options(parser) if not a.option_strings]
    has_options = any(a.option_strings for a in options(parser))
    return " ".join(["racetrack", name, *(["[options]"] if has_options else []), *positionals])


def command_section(name: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## `racetrack {name}`", "", f"{summary[:1].upper()}{summary[1:]}." if summary else "", ""]
    lines += ["```", _synopsis(name, parser), "```", ""]
    rows = [(f"`{_argument(a)}`", _help(a, parser.prog)) for a in options(parser)]
    if rows:
        lines += ["| argument | what it does |", "| --- | --- |"]
        lines += [f"| {_cell(arg)} | {_cell(text)} |" for arg, text in rows]
        lines.append("")
    for group in parser._mutually_exclusive_groups:
        flags = [a.option_strings[0] for a in group._group_actions if a.option_strings]
        lines += [f"At most one of {', '.join(f'`{f}`' for f in flags)}.", ""]
    if name in SEE_ALSO:
        lines += [f"More: {SEE_ALSO[name]}.", ""]
    return lines


def markdown(parser: argparse.ArgumentParser) -> str:
    """The whole page."""
    commands = list(subcommands(parser))
    lines = [HEADER, "| command | what it does |", "| --- | --- |"]
    lines += [f"| [`racetrack {name}`](#racetrack-{name}) | {_cell(summary)} |" for name, summary, _ in commands]
    lines.append("")
    for name, summary, sub in commands:
        lines += command_section(name, summary, sub)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    from sim.cli import build_parser

    print(markdown(build_parser()), end="")


if __name__ == "__main__":
    main()
