"""How long the quick commands take from a cold process: ``racetrack --help``, ``--version``,
``strategies``, ``scenarios`` and ``invariants``, each beside ``python -c pass`` (the floor any
Python command pays), as the best of N runs and the ratio to that floor.

Every command is started the way a user starts it (the ``racetrack`` script next to this
interpreter, else ``python -m sim``), with this process's environment (``PYTHONPATH`` included),
and with compiled bytecode, as an installed package has it: ``PYTHONDONTWRITEBYTECODE`` is
dropped and the bytecode goes to a temporary ``PYTHONPYCACHEPREFIX`` (removed at the end), warmed
by one untimed run of each command. ``--no-bytecode`` times compiling every module instead.
The best of N is reported because the machine is shared: the minimum is the run least disturbed
by others. The load average is printed beside the figures.

    python benchmarks/cli_startup.py
    python benchmarks/cli_startup.py --repeat 40
    python benchmarks/cli_startup.py --instructions

``--instructions`` counts instead of timing: each command runs once under valgrind's callgrind
tool, and its instruction count (callgrind's "Collected") is set beside ``python -c pass``'s. The
count does not move with the machine's load or speed, so it compares two trees on a noisy
machine; it weighs the interpreter's start-up less than wall time does (starting a process is
the kernel's work, not counted), so its ratios sit above the wall ratios. Needs ``valgrind``.

May import: the standard library only (it times subprocesses), and ``callgrind.py`` beside it,
which does too. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from callgrind import under_callgrind  # benchmarks/callgrind.py, beside this script

COMMANDS = (["--help"], ["--version"], ["strategies"], ["scenarios"], ["invariants"])
TARGET_RATIO = 3.0


def racetrack_command() -> list[str]:
    script = Path(sys.executable).parent / "racetrack"
    if script.exists():
        return [sys.executable, str(script)]
    found = shutil.which("racetrack")
    return [sys.executable, found] if found else [sys.executable, "-m", "sim"]


def best_of(argv: list[str], repeat: int, env: dict[str, str]) -> tuple[float, float]:
    """The fastest of ``repeat`` runs of ``argv``: (wall seconds, CPU seconds of the process,
    user + system). Output is discarded; the command must exit 0. The CPU time is what a loaded
    machine disturbs least (waiting for a core is not counted)."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()  # wall-clock ok: a benchmark
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = min(wall, time.perf_counter() - started)  # wall-clock ok: a benchmark
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: exit {process.returncode}")
        cpu = min(cpu, usage.ru_utime + usage.ru_stime)
    return wall, cpu


def instructions(valgrind: str, argv: list[str], env: dict[str, str]) -> int:
    """The instructions ``argv`` runs, counted by callgrind (output discarded; must exit 0)."""
    counted, process = under_callgrind(valgrind, argv, env)
    if counted is None:
        raise SystemExit(f"{' '.join(argv)} under valgrind: exit {process.returncode}")
    return counted


def count(env: dict[str, str], bytecode: str) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("cli_startup.py: --instructions needs valgrind (apt-get install valgrind)")
    racetrack = racetrack_command()
    for command in COMMANDS:  # uncounted: writes the bytecode cache
        best_of([*racetrack, *command], 1, env)
    floor = instructions(valgrind, [sys.executable, "-c", "pass"], env)
    print(f"instructions (callgrind), {bytecode}")
    print(f"{'command':<24} {'instructions':>14} {'ratio':>6}   (ratio: x python -c pass)")
    print(f"{'python -c pass':<24} {floor:>14,} {1.0:>6.2f}")
    for command in COMMANDS:
        n = instructions(valgrind, [*racetrack, *command], env)
        print(f"{' '.join(['racetrack', *command]):<24} {n:>14,} {n / floor:>6.2f}")


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--repeat takes a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--repeat must be >= 1 (got {value})")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=at_least_one, default=20, help="runs per command; the best counts (default: 20)")
    parser.add_argument("--no-bytecode", action="store_true", help="time with PYTHONDONTWRITEBYTECODE=1 (compile every import)")
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind instead of timing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="racetrack-cli-startup-") as cache:
        env = dict(os.environ)
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = cache
        bytecode = "compiled every time" if args.no_bytecode else "bytecode cached"
        if args.instructions:
            count(env, bytecode)
        else:
            measure(args.repeat, env, bytecode)


def measure(repeat: int, env: dict[str, str], bytecode: str) -> None:
    racetrack = racetrack_command()
    floor_argv = [sys.executable, "-c", "pass"]
    for command in COMMANDS:  # untimed: writes the bytecode cache
        best_of([*racetrack, *command], 1, env)
    load_before = os.getloadavg()[0]
    # The floor is measured before and after the commands: a change of load during the run
    # shows as a floor that moved (the lower one counts).
    floor = best_of(floor_argv, repeat, env)
    rows = [(" ".join(["racetrack", *command]), best_of([*racetrack, *command], repeat, env)) for command in COMMANDS]
    again = best_of(floor_argv, repeat, env)
    floor = (min(floor[0], again[0]), min(floor[1], again[1]))
    load_after = os.getloadavg()[0]
    print(f"best of {repeat}, {bytecode}; load average {load_before:.2f} before, {load_after:.2f} after ({os.cpu_count()} cores)")
    print(f"{'command':<24} {'wall ms':>8} {'ratio':>6} {'cpu ms':>8} {'ratio':>6}   (ratio: x python -c pass)")
    print(f"{'python -c pass':<24} {floor[0] * 1000:>8.1f} {1.0:>6.2f} {floor[1] * 1000:>8.1f} {1.0:>6.2f}")
    worst = 0.0
    for name, (wall, cpu) in rows:
        worst = max(worst, wall / floor[0])
        print(f"{name:<24} {wall * 1000:>8.1f} {wall / floor[0]:>6.2f} {cpu * 1000:>8.1f} {cpu / floor[1]:>6.2f}")
    print(f"worst wall ratio {worst:.2f} (aim: < {TARGET_RATIO:g})")


if __name__ == "__main__":
    main()
