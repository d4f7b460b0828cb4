"""Output files a tester found replaced, overwritten or misnamed: every output (``sweep --out`` /
``--report``, ``check --junit``, ``explore --out``, ``export --pytest`` / ``--isolation``) follows a
symbolic link to the file it names, writes a FIFO or character device in place (a full one is one
line, exit 2), refuses a socket; never writes over a file the command reads; a full disk during a
sweep names the results and keeps the partial resumable; ``--resume`` refuses a partial whose
strategy file changed.

Devices are made only inside the test's own temporary directory (never /dev/full or /dev/null):
``os.mknod`` of a full device (1, 7) needs root, and so does a tmpfs; those tests skip otherwise."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from interrupting import interrupt

from sim.cli import main
from sim.engine import scenario as scenarios
from sim.runs import results_file
from sim.runs import sweep as sweep_module
from sim.runs.sweep import Sweep

ROOT = os.geteuid() == 0
SWEEP = ["sweep", "seed-fast-jobs", "--strategies", "naive", "--workers", "1"]
CHECK = ["check", "seed-fast-jobs", "--runs", "2", "--search", "0", "--workers", "1"]
BUNDLED_TABLE = Path(__file__).resolve().parents[1] / "tracker" / "schema.sql"


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("racetrack"), err
    return err


def full_device(path: Path) -> Path:
    """A character device like /dev/full (every write: ENOSPC), at ``path`` in a temp dir."""
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    return path


needs_root = pytest.mark.skipif(not ROOT, reason="making a device node or mounting a tmpfs needs root")


@pytest.fixture(scope="module")
def counterexample(tmp_path_factory) -> Path:
    trace = tmp_path_factory.mktemp("trace") / "t.json"
    assert main(["explore", "seed-fast-jobs", "--strategy", "naive", "--method", "random", "--budget", "50",
                 "--out", str(trace)]) == 1
    return trace


def _command(kind: str, target: Path, trace: Path) -> tuple[list[str], int]:
    """The command line writing ``target`` as output ``kind``, and its exit code when it can."""
    return {
        "sweep-csv": ([*SWEEP, "--runs", "3", "--out", str(target)], 0),
        "sweep-parquet": ([*SWEEP, "--runs", "3", "--out", str(target)], 0),
        "junit": ([*CHECK, "--junit", str(target)], 0),
        "explore": (["explore", "seed-fast-jobs", "--strategy", "naive", "--method", "random", "--budget", "50",
                     "--out", str(target)], 1),
        "pytest": (["export", str(trace), "--pytest", str(target)], 0),
        "isolation": (["export", str(trace), "--isolation", str(target)], 0),
    }[kind]


SUFFIX = {"sweep-csv": ".csv", "sweep-parquet": ".parquet", "junit": ".xml", "explore": ".json", "pytest": ".py",
          "isolation": ".spec"}
KINDS = list(SUFFIX)


# --- 1. a symlink is followed, a device or FIFO written in place, a socket refused ---------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_output_through_a_symlink_writes_the_file_it_points_to_and_keeps_the_link(tmp_path, capsys, counterexample, kind):
    target = tmp_path / "real" / f"target{SUFFIX[kind]}"
    target.parent.mkdir()
    target.write_text("old\n")
    os.chmod(target, 0o640)
    link = tmp_path / f"link{SUFFIX[kind]}"
    link.symlink_to(target)
    argv, code = _command(kind, link, counterexample)
    assert main(argv) == code
    capsys.readouterr()
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() != b"old\n" and target.stat().st_size > 100
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the file is updated, not replaced by a stranger
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no staging file left


@needs_root
@pytest.mark.parametrize("kind", KINDS)
def test_a_full_character_device_is_written_in_place_and_is_one_line(tmp_path, capsys, counterexample, kind):
    device = full_device(tmp_path / f"full{SUFFIX[kind]}")
    argv, _ = _command(kind, device, counterexample)
    assert main(argv) == 2
    err = one_line(capsys)
    assert "cannot write (No space left on device)" in err and str(device) in err and "standard output" not in err
    assert stat.S_ISCHR(device.stat().st_mode)  # still the device, not a regular file put in its place
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([device.name, *([f"{device.name}.partial"] if kind.startswith("sweep") else [])])


def _read_fifo(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_sweep_into_a_fifo_streams_the_same_bytes_as_into_a_file(tmp_path, capsys, suffix):
    plain = tmp_path / f"plain{suffix}"
    assert main([*SWEEP, "--runs", "5", "--out", str(plain)]) == 0
    fifo = tmp_path / f"pipe{suffix}"
    os.mkfifo(fifo)
    thread, got = _read_fifo(fifo)
    assert main([*SWEEP, "--runs", "5", "--out", str(fifo)]) == 0
    thread.join(30)
    assert got == [plain.read_bytes()]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert not Path(f"{fifo}.partial").exists()


def test_check_junit_into_a_fifo_writes_it_in_place(tmp_path, capsys):
    fifo = tmp_path / "junit.xml"
    os.mkfifo(fifo)
    thread, got = _read_fifo(fifo)
    assert main([*CHECK, "--junit", str(fifo)]) == 0
    thread.join(30)
    assert got[0].startswith(b"<?xml") and b"<testsuites" in got[0]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.parametrize("kind", ["junit", "sweep-csv", "explore"])
def test_a_socket_is_refused_in_one_line(tmp_path, capsys, monkeypatch, counterexample, kind):
    monkeypatch.chdir(tmp_path)  # a short relative name: socket paths are limited to ~100 bytes
    name = f"s{SUFFIX[kind]}"
    server = socket.socket(socket.AF_UNIX)
    server.bind(name)
    try:
        argv, _ = _command(kind, Path(name), counterexample)
        assert main(argv) == 2
        assert f"{name}: is a socket" in one_line(capsys)
        assert stat.S_ISSOCK(os.stat(name).st_mode)
    finally:
        server.close()


# --- 2. an output never overwrites one of the command's inputs ---------------------------------


@pytest.fixture
def own_inputs(tmp_path, monkeypatch):
    """A scenario with [expect] on a table of its own, and a strategy file, in the working dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "own.sql").write_text(BUNDLED_TABLE.read_text())
    text = (Path(scenarios.bundled_dir()) / "seed-fast-jobs.toml").read_text()
    head, _, _ = text.partition("[expect]")
    (tmp_path / "my.toml").write_text(f'{head}[table]\nsql = "own.sql"\n\n[expect]\n"outputs_strat:MINE" = "clean"\n')
    (tmp_path / "outputs_strat.py").write_text(
        "from dataclasses import replace\nfrom tracker.strategies import load_strategy\n\n"
        "MINE = replace(load_strategy('atomic'), name='mine')\n"
    )
    yield tmp_path
    sys.modules.pop("outputs_strat", None)  # the next test's module lives in another directory


@pytest.mark.parametrize("target, what", [
    ("my.toml", "scenario file"), ("own.sql", "table SQL file"), ("outputs_strat.py", "strategy file"),
])
def test_check_junit_never_overwrites_what_check_reads(own_inputs, capsys, target, what):
    before = {p.name: p.read_bytes() for p in own_inputs.iterdir() if p.is_file()}
    assert main(["check", "my.toml", "--runs", "2", "--search", "0", "--workers", "1", "--junit", target]) == 2
    assert f"--junit {target}: is the {what} this command reads" in one_line(capsys)
    assert {p.name: p.read_bytes() for p in own_inputs.iterdir() if p.is_file()} == before


def test_check_junit_never_overwrites_the_table_sql_given_on_the_command_line(own_inputs, capsys):
    (own_inputs / "other.sql").write_text(BUNDLED_TABLE.read_text())
    assert main([*CHECK, "--table-sql", "other.sql", "--junit", "./other.sql"]) == 2
    assert "--junit ./other.sql: is the table SQL file this command reads" in one_line(capsys)
    assert (own_inputs / "other.sql").read_text() == BUNDLED_TABLE.read_text()


@pytest.mark.parametrize("argv, what", [
    (["sweep", "my.toml", "--strategies", "atomic", "--out", "my.toml"], "scenario file"),
    (["sweep", "my.toml", "--strategies", "atomic", "--out", "own.sql"], "table SQL file"),
    (["sweep", "seed-fast-jobs", "--table-sql", "own.sql", "--strategies", "atomic", "--out", "own.sql"], "table SQL file"),
    (["sweep", "seed-fast-jobs", "--strategies", "outputs_strat:MINE", "--out", "outputs_strat.py"], "strategy file"),
])
def test_sweep_out_never_overwrites_what_the_sweep_reads(own_inputs, capsys, argv, what):
    before = {p.name: p.read_bytes() for p in own_inputs.iterdir() if p.is_file()}
    assert main([*argv, "--runs", "2", "--workers", "1"]) == 2
    assert f"is the {what} this command reads" in one_line(capsys)
    assert {p.name: p.read_bytes() for p in own_inputs.iterdir() if p.is_file()} == before


def test_the_overwrite_check_is_one_helper_shared_by_every_command():
    from sim.cli import check, explore, export, output
    from sim.cli import sweep as sweep_cli

    for module in (check, explore, export, sweep_cli):
        assert module.refuse_overwriting is output.refuse_overwriting


# --- 3. messages name the path as the user gave it ---------------------------------------------


def test_a_fresh_sweep_over_a_partial_with_report_names_report(tmp_path, capsys):
    report = tmp_path / "rep"
    report.mkdir()
    (report / "results.parquet.partial").write_bytes(b"finished runs")
    assert main([*SWEEP, "--runs", "2", "--report", str(report)]) == 2
    err = one_line(capsys)
    assert err.startswith(f"racetrack: --report {report}: ") and "--out" not in err
    assert (report / "results.parquet.partial").read_bytes() == b"finished runs"


def test_the_interrupt_message_names_the_partial_with_its_directory(tmp_path, capsys, monkeypatch):
    import sim.cli.sweep as sweep_cli

    class Interrupting(sweep_cli.Progress):
        def step(self, n: int = 1) -> None:
            super().step(n)
            if self.done >= 4:
                raise KeyboardInterrupt

    monkeypatch.setattr(sweep_cli, "Progress", Interrupting)
    monkeypatch.chdir(tmp_path)
    assert main([*SWEEP, "--runs", "200", "--out", "sub/r.parquet"]) == 130
    err = capsys.readouterr().err
    assert "finished run(s) kept in sub/r.parquet.partial; continue with:" in err
    assert (tmp_path / "sub" / "r.parquet.partial").is_file()


# --- 4. a full disk while a sweep writes its results --------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if not ROOT or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)],
                                  capture_output=True).returncode:
        pytest.skip("needs root and tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("flag", ["--out", "--report"])
def test_a_full_disk_during_a_sweep_names_the_results_and_keeps_the_partial_resumable(tmp_path, small_disk, capsys, flag):
    out = small_disk / ("r.parquet" if flag == "--out" else "results.parquet")
    place = str(out) if flag == "--out" else str(small_disk)
    argv = [*SWEEP, "--runs", "400", flag, place]
    assert main(argv) == 2
    err = one_line(capsys)
    assert err.startswith(f"racetrack: {flag} {place}: cannot write (No space left on device)"), err
    assert "standard output" not in err
    partial = Path(f"{out}.partial")
    # the first chunks fit: the partial holds them, resumable (a cut-off last batch is dropped)
    assert f"the {_kept(err)} finished run(s) are kept in {partial}: add --resume" in err
    assert results_file.read_fingerprint(partial)["runs"] == 400
    # with room again (the partial moved to a big disk), --resume ends with the file an
    # uninterrupted sweep writes
    roomy = tmp_path / "roomy" / "r.parquet"
    roomy.parent.mkdir()
    Path(f"{roomy}.partial").write_bytes(partial.read_bytes())
    assert main([*SWEEP, "--runs", "400", "--out", str(roomy), "--resume"]) == 0
    plain = tmp_path / "plain.parquet"
    assert main([*SWEEP, "--runs", "400", "--out", str(plain)]) == 0
    assert roomy.read_bytes() == plain.read_bytes()


def _kept(err: str) -> int:
    count = int(err.split("; the ")[1].split(" ")[0])
    assert 0 < count < 400
    return count


@needs_root
def test_a_results_file_that_cannot_be_finalized_keeps_every_run_for_resume(tmp_path, capsys):
    out = full_device(tmp_path / "r.csv")
    assert main([*SWEEP, "--runs", "5", "--out", str(out)]) == 2
    err = one_line(capsys)
    assert f"--out {out}: cannot write (No space left on device); every run stays in {out}.partial" in err
    out.unlink()  # the device gone, --resume writes the file from the partial alone
    assert main([*SWEEP, "--runs", "5", "--out", str(out), "--resume"]) == 0
    plain = tmp_path / "plain.csv"
    assert main([*SWEEP, "--runs", "5", "--out", str(plain)]) == 0
    assert out.read_bytes() == plain.read_bytes()
    assert not Path(f"{out}.partial").exists()


# --- 5. --resume refuses a partial whose strategy file changed ---------------------------------


@pytest.fixture
def strategy_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "resume_strat.py"
    path.write_text("from dataclasses import replace\nfrom tracker.strategies import load_strategy\n\n"
                    "MINE = replace(load_strategy('atomic'), name='mine')\n")
    yield path
    sys.modules.pop("resume_strat", None)  # the next test's module lives in another directory


def _user_sweep() -> Sweep:
    return Sweep((scenarios.load("seed-fast-jobs"),), ("resume_strat:MINE",), runs=24)


RESUME = ["sweep", "seed-fast-jobs", "--runs", "24", "--strategies", "resume_strat:MINE", "--workers", "1"]


def test_the_fingerprint_records_a_user_strategys_file_and_only_then(strategy_file):
    import hashlib

    assert _user_sweep().fingerprint()["strategy_sha256"] == {
        "resume_strat:MINE": hashlib.sha256(strategy_file.read_bytes()).hexdigest()}
    builtin = Sweep((scenarios.load("seed-fast-jobs"),), ("naive", "atomic"), runs=3).fingerprint()
    assert "strategy_sha256" not in builtin


def test_resume_refuses_a_partial_whose_strategy_file_changed(strategy_file, tmp_path, capsys):
    out = tmp_path / "s.parquet"
    assert interrupt(_user_sweep(), out, after=4) > 0
    partial = Path(f"{out}.partial")
    kept = partial.read_bytes()
    strategy_file.write_text(strategy_file.read_text() + "# edited\n")
    assert main([*RESUME, "--out", str(out), "--resume"]) == 2
    err = one_line(capsys)
    assert "is from a different sweep (the file of strategy resume_strat:MINE changed since); nothing was changed" in err
    assert partial.read_bytes() == kept and not out.exists()


def test_resume_of_a_partial_without_the_strategy_digest_is_refused(strategy_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o.parquet"
    with monkeypatch.context() as m:  # as a racetrack before the digest wrote it
        m.setattr(sweep_module, "_strategy_digests", lambda refs: {})
        interrupt(_user_sweep(), out, after=4)
    assert main([*RESUME, "--out", str(out), "--resume"]) == 2
    err = one_line(capsys)
    assert "written by an older racetrack" in err and "the file of strategy resume_strat:MINE" in err
    assert not out.exists()


def test_resume_with_the_same_strategy_file_finishes_the_sweep(strategy_file, tmp_path, capsys):
    out = tmp_path / "same.parquet"
    interrupt(_user_sweep(), out, after=4)
    assert main([*RESUME, "--out", str(out), "--resume"]) == 0
    plain = tmp_path / "plain.parquet"
    assert main([*RESUME, "--out", str(plain)]) == 0
    assert out.read_bytes() == plain.read_bytes()
