"""Results files written as a sweep runs: streamed, crash-safe, resumable.

While a sweep runs, finished rows are appended, one Arrow record batch per chunk, to
``OUT.partial`` (an Arrow IPC stream, zstd-compressed, whose schema metadata holds the sweep's
fingerprint), and flushed after every batch. Memory stays flat however many runs. A sweep that is interrupted
(Ctrl-C) closes the stream cleanly; one that is killed leaves a stream whose last batch may be
cut short, and reading stops at the last whole batch. Either way ``--resume`` continues from what
is there. Only when every run is done is the stream converted, in row groups of
:data:`ROW_GROUP_ROWS` rows, to ``OUT`` (Parquet via ``pyarrow.parquet.ParquetWriter``, or CSV),
written beside it and renamed into place: a file under the real name is always complete, and the
same sweep gives the same bytes however it was cut up, interrupted, resumed or parallelized.

:func:`write_output_file` is how every output file a command writes (results, traces, JUnit,
exported tests) reaches the disk: whole or not at all, through a symbolic link to the file it
names, and into a FIFO or character device in place (see :func:`output_target`).

May import: ``sim.runs.columns`` (the declared columns), pyarrow, pandas (CSV formatting), both only inside
the functions that need them (importing this module stays cheap). Runs nothing.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sim.runs.columns import Column, columns_for
from tracker.errors import UserError

if TYPE_CHECKING:  # pyarrow (and numpy under it) is imported where a file is read or written:
    import pyarrow as pa  # a command that writes no results file starts without it

FORMATS = (".parquet", ".csv")
ROW_GROUP_ROWS = 10_000
METADATA_KEY = b"racetrack.sweep"

class ResultsError(UserError, ValueError):
    """A results file that cannot be used as asked; ``str()`` is the one line the user sees."""


class OutputError(UserError, ValueError):
    """An output file that cannot be written as asked; ``str()`` is the one line the user sees."""


#: Paths that name a descriptor the command already holds (``--junit /dev/stdout``): written in
#: place, whatever they lead to (renaming over the file behind them would cut the command's own
#: output off from it).
_DESCRIPTOR = re.compile(r"/dev/(?:stdout|stderr|fd/\d+)|/proc/(?:self|thread-self|\d+)/fd/\d+")


def output_target(path: Path, said: str) -> tuple[Path, bool]:
    """Where writing the output ``path`` goes, and whether it is a stream, written in place.

    A symbolic link is followed: the file it points to is written (and its staging file sits
    beside that file), the link stays. An existing FIFO or character device (a named pipe, a
    terminal, ``/dev/stdout``) is a stream: written into as a shell's ``>>`` would, never renamed
    over. Any other file that is not a regular file (a block device, a socket) is refused in one
    line starting with ``said``."""
    if _DESCRIPTOR.fullmatch(os.path.abspath(path)):
        return path, True
    try:
        mode = os.stat(path).st_mode  # through links
    except OSError:  # nothing there yet (or unreachable: writing it says why)
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            return path, True
        what = ("a folder" if stat.S_ISDIR(mode) else "a block device" if stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise OutputError(f"{said}: is {what}; name a regular file (or a FIFO or character device to stream into)")
    real = os.path.realpath(path)
    return (path if real == os.path.abspath(path) else Path(real)), False


def write_output_file(path: Path, fill: Callable[[IO[bytes]], None], said: str, staging: str = ".partial") -> None:
    """Write an output file the user asked for: ``fill`` writes its content into a binary file.

    A regular file (or a new one) is written whole or not at all: into ``NAME`` + ``staging``
    beside it, then renamed over it (keeping an existing file's permissions); a symbolic link's
    target is what is written. A FIFO or character device is written into in place
    (:func:`output_target`). A file system error (a full disk, no permission) is one line,
    ``SAID: cannot write (REASON)``, and leaves no staging file behind."""
    target, stream = output_target(path, said)
    if stream:  # what the command printed comes first, should the stream be its own output
        sys.stdout.flush()
        sys.stderr.flush()
    temp = None if stream else target.with_name(target.name + staging)
    try:
        if temp is None:
            with open(target, "ab") as f:
                fill(f)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as f:
                fill(f)
            try:
                os.chmod(temp, stat.S_IMODE(os.stat(target).st_mode))
            except FileNotFoundError:
                pass
            os.replace(temp, target)
            temp = None
    except OSError as exc:
        raise OutputError(f"{said}: cannot write ({exc.strerror or exc})") from None
    finally:
        if temp is not None:  # never a half-written file beside the one asked for
            try:
                temp.unlink(missing_ok=True)
            except OSError:
                pass


def write_output_bytes(path: Path, data: bytes, said: str) -> None:
    """:func:`write_output_file` of ``data``."""

    def fill(f: IO[bytes]) -> None:
        f.write(data)

    write_output_file(path, fill, said)


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def schema_for(fingerprint: dict[str, Any]) -> pa.Schema:
    """The Arrow schema of a results file (the declared columns), carrying the sweep's fingerprint."""
    import pyarrow as pa

    own = any("invariants.rows" in s.get("params", {}) for s in fingerprint.get("scenarios", ()))
    fields = [pa.field(c.name, pa.type_for_alias(c.arrow)) for c in columns_for(own)]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(fingerprint, sort_keys=True)})


def _differences(stored: dict[str, Any], current: dict[str, Any]) -> str:
    said = []
    names = lambda f: ",".join(s["name"] for s in f.get("scenarios", []))  # noqa: E731
    if names(stored) != names(current):
        said.append(f"scenarios {names(stored) or '?'} there, {names(current)} here")
    elif stored.get("scenarios") != current.get("scenarios"):
        said.append("scenario parameters differ")
    for key in ("strategies", "runs", "seed", "backend", "format"):
        a, b = stored.get(key), current.get(key)
        if a != b:
            show = (lambda v: ",".join(v)) if key == "strategies" else (lambda v: json.dumps(v) if isinstance(v, dict) else str(v))
            said.append(f"{key} {show(a) if a is not None else '?'} there, {show(b)} here")
    return "; ".join(said) or "it differs"


def read_fingerprint(partial: Path) -> dict[str, Any]:
    import pyarrow as pa

    try:
        with open(partial, "rb") as f:
            schema = pa.ipc.open_stream(f).schema
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(f"--resume: {partial} is not a racetrack partial results file ({exc})") from None
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ResultsError(f"--resume: {partial} is not a racetrack partial results file (no sweep fingerprint)")
    loaded: dict[str, Any] = json.loads(raw)
    return loaded


def _whole_batches(reader: Any) -> Iterator[pa.RecordBatch]:
    """The batches of a stream, stopping quietly at a cut-off tail (a killed sweep)."""
    import pyarrow as pa

    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except (OSError, pa.ArrowException):
            return


class PartialResults:
    """``OUT.partial`` of one sweep: appended to as chunks finish, finalized into ``OUT``.

    ``said`` is how the user named where the results go (``--out OUT``, ``--report DIR``), for
    messages. ``OUT`` a symbolic link: the partial sits beside the file it points to, which is
    what is written (:func:`output_target`)."""

    def __init__(self, out: Path, fingerprint: dict[str, Any], resume: bool, said: str | None = None) -> None:
        self.said = said or f"--out {out}"
        self.out, self.partial = out, partial_path(output_target(out, self.said)[0])
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        self.resume = resume
        self.rows = 0
        self._file: IO[bytes] | None = None
        self._writer: Any = None
        self._schema: pa.Schema | None = None
        self._fresh: Path | None = None

    @classmethod
    def check(cls, out: Path, fingerprint: dict[str, Any], resume: bool, said: str | None = None) -> PartialResults:
        """Validate ``out`` (and, on resume, its partial) without changing any file."""
        said = said or f"--out {out}"
        if out.suffix not in FORMATS:
            raise ResultsError(f"{said}: the file must end in .parquet or .csv")
        results = cls(out, fingerprint, resume, said)
        if not resume and results.partial.is_file() and results.partial.stat().st_size:  # a fresh sweep would truncate it
            raise ResultsError(
                f"{said}: {results.partial} holds the finished runs of an interrupted sweep; add --resume to "
                f"continue it, or delete {results.partial.name} to start again"
            )
        if resume:
            if not results.partial.is_file():
                finished = f" ({out} exists: that sweep already finished)" if out.exists() else ""
                raise ResultsError(f"--resume: no {results.partial} to resume{finished}")
            stored = read_fingerprint(results.partial)
            if stored != results.fingerprint:
                raise ResultsError(
                    f"--resume: {results.partial} is from a different sweep ({_differences(stored, results.fingerprint)});"
                    " nothing was changed"
                )
        return results

    def open(self) -> None:
        """Make ready to write (a fresh sweep starts a partial, :meth:`check` having refused to
        write over an old one; a resume opens its copy in :meth:`resumed_rows`). Raises ``OSError`` when the place cannot be written."""
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        if not self.resume:
            self._file = open(self.partial, "wb")
        elif not os.access(self.partial.parent, os.W_OK):
            raise PermissionError(13, "directory not writable", str(self.partial.parent))

    def resumed_rows(self, retry: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
        """On resume: the rows already done, copied into a fresh stream that then takes the new
        ones (the old stream may end in a cut-off batch, which is dropped). A row whose run could
        not finish (``error`` set) is replaced by ``retry(position, row)``: it is run again."""
        import pyarrow as pa

        if not self.resume:
            return
        self._fresh = self.partial.with_name(self.partial.name + ".resuming")
        position = 0
        with open(self.partial, "rb") as old:
            reader = pa.ipc.open_stream(old)
            with self._writing():
                self._file = open(self._fresh, "wb")
                self._start(reader.schema)
            for batch in _whole_batches(reader):
                rows = batch.to_pylist()
                if retry is not None and any(r.get("error") for r in rows):
                    rows = [retry(position + i, r) if r.get("error") else r for i, r in enumerate(rows)]
                    batch = pa.RecordBatch.from_pylist(rows, schema=reader.schema)
                position += len(rows)
                self._write(batch)
                yield from rows
        with self._writing():
            os.replace(self._fresh, self.partial)  # the open handle follows the file
        self._fresh = None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A file system error while the partial is written (a full disk) as one line naming
        the results, saying where the finished runs are kept (resumable: a cut-off last batch
        is dropped on --resume)."""
        try:
            yield
        except OSError as exc:
            kept = (f"; the {self.rows} finished run(s) are kept in {self.partial}: add --resume to continue once it "
                    "can be written") if self.rows else ""
            raise ResultsError(f"{self.said}: cannot write ({exc.strerror or exc}){kept}") from None

    def _start(self, schema: pa.Schema) -> None:
        import pyarrow as pa

        assert self._file is not None
        self._schema = schema
        # zstd: a million rows of JSON-heavy columns would otherwise take ~1.5 GB of disk
        self._writer = pa.ipc.new_stream(self._file, schema, options=pa.ipc.IpcWriteOptions(compression="zstd"))

    def _write(self, batch: pa.RecordBatch) -> None:
        assert self._file is not None
        with self._writing():
            self._writer.write_batch(batch)
            self._file.flush()
        self.rows += batch.num_rows

    def append(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa

        if not rows:
            return
        if self._writer is None:
            with self._writing():
                self._start(schema_for(self.fingerprint))
        assert self._schema is not None
        self._write(pa.RecordBatch.from_pylist(rows, schema=self._schema))

    def close(self) -> None:
        """Stop, keeping what is written (a valid, resumable stream; after a failed write, a
        stream whose cut-off end --resume drops)."""
        import pyarrow as pa

        if self._writer is not None:
            try:
                self._writer.close()
            except (OSError, pa.ArrowException):  # a full disk: the batches before stay readable
                pass
            self._writer = None
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        if self._fresh is not None:  # interrupted while copying: the old partial is still whole
            self._fresh.unlink(missing_ok=True)
            self._fresh = None

    def drop_if_empty(self) -> None:
        """Remove a fresh sweep's partial that never took a row (the sweep could not start, or
        could not write its first rows): it holds nothing to resume, and left behind it would stand in the next sweep's way."""
        if not self.resume and self.rows == 0 and self.partial.is_file():  # at most a schema (a full disk)
            self.partial.unlink(missing_ok=True)

    def finalize(self, keep_partial: bool = False) -> None:
        """Convert the stream into ``OUT`` (:func:`write_output_file`: written beside it as
        ``OUT.finalizing``, then renamed; a FIFO or character device in place) and drop the
        stream (kept with ``keep_partial``: runs that could not finish are retried from it by
        --resume; kept too when ``OUT`` cannot be written: --resume writes it again)."""
        import pyarrow as pa

        self.close()
        with open(self.partial, "rb") as source:
            reader = pa.ipc.open_stream(source)
            convert = _to_parquet if self.out.suffix == ".parquet" else _to_csv
            try:
                write_output_file(self.out, lambda f: convert(reader, f), self.said, ".finalizing")
            except OutputError as exc:
                raise ResultsError(f"{exc}; every run stays in {self.partial}: add --resume to write it again "
                                   "once it can be written") from None
        if not keep_partial:
            self.partial.unlink()


def write_rows(out: Path, rows: list[dict[str, Any]], columns: tuple[Column, ...]) -> None:
    """A small results file written at once (live runs: a handful of rows, no streaming): the
    given columns in order, Parquet or CSV as a sweep writes them, written beside ``out`` and
    renamed into place. Raises :class:`OutputError` (one line, ``--out OUT: cannot write ...``) when the place
    cannot be written."""
    import pyarrow as pa

    schema = pa.schema([pa.field(c.name, pa.type_for_alias(c.arrow)) for c in columns])
    table = pa.Table.from_pylist([{c.name: row.get(c.name) for c in columns} for row in rows], schema=schema)

    def fill(f: IO[bytes]) -> None:
        if out.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, f, row_group_size=ROW_GROUP_ROWS)
        else:
            with _text(f) as text:
                table.to_pandas().to_csv(text, index=False)

    write_output_file(out, fill, f"--out {out}", ".finalizing")


def _row_groups(reader: Any) -> Iterator[pa.Table]:
    """The stream's rows re-cut into tables of exactly ROW_GROUP_ROWS (the last one shorter),
    so the output does not depend on how the sweep was chunked."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in _whole_batches(reader):
        pending.append(batch)
        held += batch.num_rows
        while held >= ROW_GROUP_ROWS:
            table = pa.Table.from_batches(pending, schema=reader.schema)
            yield table.slice(0, ROW_GROUP_ROWS)
            rest = table.slice(ROW_GROUP_ROWS)
            pending, held = rest.to_batches(), rest.num_rows
    if held or not pending:
        yield pa.Table.from_batches(pending, schema=reader.schema)


def _to_parquet(reader: Any, f: IO[bytes]) -> None:
    import pyarrow.parquet as pq

    with pq.ParquetWriter(f, reader.schema) as writer:
        for table in _row_groups(reader):
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)


@contextmanager
def _text(f: IO[bytes]) -> Iterator[IO[str]]:
    """``f`` as UTF-8 text with newlines as written, flushed and handed back at the end."""
    text = io.TextIOWrapper(f, encoding="utf-8", newline="")  # type: ignore[type-var]
    try:
        yield text
        text.flush()
    finally:
        text.detach()


def _to_csv(reader: Any, f: IO[bytes]) -> None:
    with _text(f) as text:
        for number, table in enumerate(_row_groups(reader)):
            table.to_pandas().to_csv(text, header=number == 0, index=False)
