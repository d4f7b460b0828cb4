"""How long the quick commands take from a cold process: ``racetrack --help``, ``--version``,
``strategies``, ``scenarios`` and ``invariants``, each beside ``python -c pass`` (the floor any
Python command pays), as the best of N runs and the ratio to that floor.

Every command is started the way a user starts it (the ``racetrack`` script next to this
interpreter, else ``python -m sim``), with this process's environment (``PYTHONPATH`` included).
The best of N is reported because the machine is shared: the minimum is the run least disturbed
by others. The load average is printed beside the figures.

    python benchmarks/cli_startup.py
    python benchmarks/cli_startup.py --repeat 40

May import: the standard library only (it times subprocesses). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["--version"], ["strategies"], ["scenarios"], ["invariants"])
TARGET_RATIO = 3.0


def racetrack_command() -> list[str]:
    script = Path(sys.executable).parent / "racetrack"
    if script.exists():
        return [sys.executable, str(script)]
    found = shutil.which("racetrack")
    return [sys.executable, found] if found else [sys.executable, "-m", "sim"]


def best_of(argv: list[str], repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``argv``, in seconds (output discarded; must exit 0)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()  # wall-clock ok: a benchmark
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - started)  # wall-clock ok: a benchmark
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="runs per command; the best counts (default: 20)")
    args = parser.parse_args()
    racetrack = racetrack_command()
    load_before = os.getloadavg()[0]
    # Interleave the floor with the commands (measured before and after) so that a change of
    # load during the run shows as a floor that moved.
    floor = best_of([sys.executable, "-c", "pass"], args.repeat)
    rows = [(" ".join(["racetrack", *command]), best_of([*racetrack, *command], args.repeat)) for command in COMMANDS]
    floor = min(floor, best_of([sys.executable, "-c", "pass"], args.repeat))
    load_after = os.getloadavg()[0]
    print(f"best of {args.repeat}; load average {load_before:.2f} before, {load_after:.2f} after ({os.cpu_count()} cores)")
    print(f"{'command':<24} {'ms':>8} {'x python -c pass':>18}")
    print(f"{'python -c pass':<24} {floor * 1000:>8.1f} {1.0:>18.2f}")
    worst = 0.0
    for name, seconds in rows:
        ratio = seconds / floor
        worst = max(worst, ratio)
        print(f"{name:<24} {seconds * 1000:>8.1f} {ratio:>18.2f}")
    print(f"worst ratio {worst:.2f} (aim: < {TARGET_RATIO:g})")


if __name__ == "__main__":
    main()
