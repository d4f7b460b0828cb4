"""Count the instructions a command runs, with valgrind's callgrind: the figure the benchmarks use
where wall time moves with the machine's load. Not a benchmark itself; imported by
``cli_startup.py``, ``instructions_per_run.py`` and ``postgres_round_trips.py``."""

from __future__ import annotations

import re
import subprocess


def under_callgrind(valgrind: str, argv: list[str], env: dict[str, str] | None = None) -> tuple[int | None, subprocess.CompletedProcess[str]]:
    """Run ``argv`` under callgrind (its profile discarded): the instructions it counted (``None``
    when the command failed or callgrind said nothing), and the finished process, whose stdout
    and stderr (callgrind's lines start with ``==``) the caller may read."""
    done = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
                          capture_output=True, text=True, env=env, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    return (int(found.group(1)) if done.returncode == 0 and found else None), done
