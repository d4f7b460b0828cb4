"""How sweeps scale: runs/s at 1, 2 and all workers (and the speed-ups), and the peak memory of
a sweep streamed to a Parquet file for growing run counts (it should not grow with them).

Each measurement runs in a fresh subprocess, timed around the sweep itself (interpreter start-up
and imports excluded); peak memory is ``ru_maxrss`` of that process (the parent: planning,
ordering, writing, summarizing) and the largest of its worker processes. Wall-clock timing is
this file's whole point; no test asserts on it.

    python benchmarks/sweep_scaling.py
    python benchmarks/sweep_scaling.py --scaling-runs 400 --memory-runs 100000,1000000

May import: ``sim`` (it runs sweeps). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = r"""
import json, resource, sys, time
from pathlib import Path
from sim.runs.runner import summarize
from sim.engine.scenario import load
from sim.runs.sweep import Execution, Sweep, SweepRun

scenario, strategies, runs, workers, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
sweep = Sweep((load(scenario),), tuple(strategies.split(",")), runs)
started = time.perf_counter()  # wall-clock ok: a benchmark
with SweepRun(sweep, Execution(workers=workers), Path(out) if out != "-" else None) as run:
    summary = summarize(run.rows())
elapsed = time.perf_counter() - started  # wall-clock ok: a benchmark
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
print(json.dumps({
    "runs": sweep.total, "elapsed_s": elapsed, "cpu_s": sum(u.ru_utime + u.ru_stime for u in usage),
    "parent_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "worker_maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""

TINY = 'description = "one job per run: the cheapest run, so run counts can be large"\n[job]\ncount = 1\n'


def measure(scenario: str, strategies: str, runs: int, workers: int, out: str = "-") -> dict:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, scenario, strategies, str(runs), str(workers), out],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark subprocess failed: {done.stderr.strip().splitlines()[-1:]}")
    result: dict = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="seed-fast-jobs", help="scenario for the scaling figures")
    parser.add_argument("--strategies", default="naive,atomic", help="strategies for the scaling figures")
    parser.add_argument("--scaling-runs", type=int, default=300, help="runs per strategy for the scaling figures")
    parser.add_argument("--memory-runs", default="100000,1000000",
                        help="comma-separated run counts for the memory figures (one-job scenario, strategy atomic)")
    parser.add_argument("--memory-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3,
                        help="scaling: best of N measurements per worker count (other load on the machine only slows runs down)")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    print(f"machine: {cores} core(s), load average {os.getloadavg()[0]:.2f} at start")
    if not args.skip_scaling:
        counts = sorted({1, 2, cores})
        print(f"\nscaling: {args.scenario} x {args.strategies}, {args.scaling_runs} runs each, no output file")
        base = base_cpu = None
        for workers in counts:
            tries = []
            for _ in range(max(args.repeat, 1)):
                tries.append(measure(args.scenario, args.strategies, args.scaling_runs, workers))
                tries[-1]["load"] = os.getloadavg()[0]
            r = min(tries, key=lambda t: t["elapsed_s"])
            rate = r["runs"] / r["elapsed_s"]
            base = base or rate
            base_cpu = base_cpu or r["cpu_s"]
            print(
                f"  workers {workers:>2}: {r['runs']} runs in {r['elapsed_s']:7.2f} s = {rate:8.1f} runs/s  "
                f"speed-up {rate / base:4.2f}x  (best of {len(tries)}; load average then {r['load']:.2f})"
            )
            print(
                f"              CPU of the sweep and its workers {r['cpu_s']:6.2f} s ({(r['cpu_s'] / base_cpu - 1) * 100:+.0f}% vs 1 worker): "
                f"on {workers} idle core(s) at most {min(workers, cores) * base_cpu / r['cpu_s']:4.2f}x"
            )

    if not args.skip_memory:
        with tempfile.TemporaryDirectory() as tmp:
            tiny = Path(tmp) / "one-job.toml"
            tiny.write_text(TINY)
            print(f"\npeak memory: one-job scenario, strategy atomic, {args.memory_workers} worker(s), streamed to Parquet")
            for runs in (int(n) for n in args.memory_runs.split(",") if n.strip()):
                out = Path(tmp) / f"runs-{runs}.parquet"
                r = measure(str(tiny), "atomic", runs, args.memory_workers, str(out))
                size = out.stat().st_size / 1e6
                print(
                    f"  {runs:>9,} runs: parent {r['parent_maxrss_mb']:7.1f} MB, largest worker {r['worker_maxrss_mb']:7.1f} MB, "
                    f"{r['elapsed_s']:8.1f} s ({runs / r['elapsed_s']:,.0f} runs/s), file {size:,.1f} MB"
                )
                out.unlink()
    print(f"\nload average {os.getloadavg()[0]:.2f} at end (other processes on this machine skew the times)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
