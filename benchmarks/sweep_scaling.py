"""How sweeps scale: runs/s at 1, 2 and all workers (and the speed-ups), the peak memory of
a sweep streamed to a Parquet file for growing run counts (it should not grow with them), and
whether Dask pays for itself: the same ``racetrack sweep`` on the local pool, on a LocalCluster
and on a real ``dask scheduler`` with two ``dask worker`` processes on this machine (started and
stopped here), as wall times, ratios to the local pool, the CPU seconds each side spent (client,
scheduler, workers) and a byte comparison of the results files.

Each measurement runs in a fresh subprocess, timed around the sweep itself (interpreter start-up
and imports excluded); peak memory is ``ru_maxrss`` of that process (the parent: planning,
ordering, writing, summarizing) and the largest of its worker processes. Wall-clock timing is
this file's whole point; no test asserts on it.

    python benchmarks/sweep_scaling.py
    python benchmarks/sweep_scaling.py --scaling-runs 400 --memory-runs 100000,1000000
    python benchmarks/sweep_scaling.py --skip-scaling --skip-memory --dask-runs 500

May import: ``sim`` (it runs sweeps). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
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


def _cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by these processes and their children (psutil, a Dask dependency)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for p in [process, *process.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


class DaskProcesses:
    """A ``dask scheduler`` and ``workers`` ``dask worker`` processes on 127.0.0.1, each in its
    own process group, all stopped (and waited for) on exit: nothing is left running."""

    def __init__(self, workers: int, nthreads: int | None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        self.workers, self.nthreads = workers, nthreads
        self.processes: list[subprocess.Popen[bytes]] = []

    def _start(self, argv: list[str]) -> None:
        dask = [sys.executable, "-m", "distributed.cli.dask_" + argv[0]]
        self.processes.append(subprocess.Popen([*dask, *argv[1:]], stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, start_new_session=True))

    def __enter__(self) -> DaskProcesses:
        from distributed import Client

        try:
            self._start(["scheduler", "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1], "--no-dashboard"])
            threads = ["--nthreads", str(self.nthreads)] if self.nthreads else []
            for _ in range(self.workers):
                self._start(["worker", self.address, "--no-dashboard", *threads])
            deadline = time.monotonic() + 60
            with Client(self.address, timeout="30s") as client:
                client.wait_for_workers(self.workers, timeout=max(deadline - time.monotonic(), 1))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self.processes):  # workers first, the scheduler last
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def timed_sweep(argv: list[str], cluster_pids: list[int]) -> dict[str, float]:
    """Wall seconds of one ``racetrack sweep`` (start-up included), the CPU seconds of the
    command and its children, and the CPU the cluster's processes used meanwhile."""
    cluster_before = _cpu_seconds(cluster_pids)
    started = time.perf_counter()  # wall-clock ok: a benchmark
    process = subprocess.Popen([sys.executable, "-m", "sim", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started  # wall-clock ok: a benchmark
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"racetrack {' '.join(argv)} failed: {process.stderr.read().decode()[-500:] if process.stderr else ''}")
    return {"wall": elapsed, "client_cpu": usage.ru_utime + usage.ru_stime,
            "cluster_cpu": _cpu_seconds(cluster_pids) - cluster_before, "load": os.getloadavg()[0]}


def dask_comparison(runs: int, repeat: int, nthreads: int | None) -> None:
    """The same sweep on the local pool, a LocalCluster and a real scheduler with two workers,
    interleaved ``repeat`` times (best wall time each), with the results files compared."""
    scenarios = ["seed-fast-jobs", "stalled-redelivery"]
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp, DaskProcesses(2, nthreads) as cluster:
        base = ["sweep", *scenarios, "--runs", str(runs)]
        setups = {
            "local pool": [*base, "--workers", str(cores)],
            "LocalCluster": [*base, "--executor", "dask", "--workers", str(cores)],
            "dask scheduler + 2 workers": [*base, "--executor", "dask", "--scheduler", cluster.address],
        }
        best: dict[str, dict[str, float]] = {}
        files: dict[str, bytes] = {}
        for _ in range(max(repeat, 1)):
            for n, (name, argv) in enumerate(setups.items()):
                out = Path(tmp) / f"{n}.parquet"
                result = timed_sweep([*argv, "--out", str(out)], cluster.pids if "scheduler" in name else [])
                files[name] = out.read_bytes()
                if name not in best or result["wall"] < best[name]["wall"]:
                    best[name] = result
        print(f"\ndask: racetrack sweep {' '.join(scenarios)} --runs {runs} ({len(scenarios) * 5 * runs} runs), whole command, "
              f"best of {max(repeat, 1)}; workers: {nthreads or 'default'} thread(s) each")
        local = best["local pool"]["wall"]
        for name, r in best.items():
            cpu = r["client_cpu"] + r["cluster_cpu"]
            print(f"  {name:<28} {r['wall']:7.2f} s  local/this {local / r['wall']:4.2f}  CPU {cpu:6.2f} s "
                  f"(command {r['client_cpu']:.2f}, cluster {r['cluster_cpu']:.2f})  load average then {r['load']:.2f}")
        same = all(data == files["local pool"] for data in files.values())
        print(f"  results files byte-identical: {'yes' if same else 'NO'}")


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
    parser.add_argument("--dask-runs", type=int, default=500, help="runs per scenario and strategy for the Dask figures")
    parser.add_argument("--dask-threads", type=int, help="threads per dask worker (default: dask's own, one per core)")
    parser.add_argument("--skip-dask", action="store_true")
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
    if not args.skip_dask:
        dask_comparison(args.dask_runs, args.repeat, args.dask_threads)
    print(f"\nload average {os.getloadavg()[0]:.2f} at end (other processes on this machine skew the times)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
