"""The columns of a results file, declared once: name, Arrow type, whether every reader may rely
on it, and what it means. The runner builds rows from it, results files type their schema from
it, reports check their inputs against it, and ``docs/results.md`` is generated from it::

    python -m sim.runs.columns > docs/results.md

May import: ``sim.judge.invariants`` (the per-invariant columns) and ``sim.runs.backend_kinds``
(the backends' names). No pyarrow, no SimPy: a report imports this to read what runs wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.judge.invariants import INVARIANTS
from sim.runs.backend_kinds import KINDS

#: The format every row carries (the ``format`` column); a reader refuses any other.
RESULTS_FORMAT = "racetrack-results/1"


@dataclass(frozen=True)
class Column:
    name: str
    #: Arrow type name (``pyarrow.type_for_alias``): string, int64, float64 or bool.
    arrow: str
    meaning: str
    #: Present in every ``racetrack-results/1`` file; a report refuses a file without it. A
    #: column added later is not required, so older files stay readable.
    required: bool = True
    #: What a cell may hold beyond its type, for a reader to check (a report refuses anything
    #: else, naming the cell): the least number (counts and durations: 0), the only values a
    #: string may take, a string that is never empty (a name), or the JSON a string holds
    #: (``list``: of numbers; ``object``).
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    filled: bool = False
    json: str = ""

    @property
    def kind(self) -> str:
        """The type as ``docs/results.md`` states it: ``int64 >= 0``, ``string: JSON list of numbers``."""
        if self.arrow == "bool":
            return "bool (true/false)"
        if self.minimum is not None:
            return f"{self.arrow} >= {self.minimum:g}"
        if self.json:
            return f"string: JSON {'list of numbers' if self.json == 'list' else self.json}"
        if self.choices:
            return f"string: {_either(self.choices)}"
        if self.filled:
            return "string, not empty"
        return self.arrow

    @property
    def allowed(self) -> str:
        """What a cell may hold, in the words an error message ends with."""
        if self.arrow == "bool":
            text = "true or false (as the sweep writes them)"
        elif self.arrow == "int64":
            text = "a whole number" + (f" >= {self.minimum:g}" if self.minimum is not None else "")
        elif self.arrow == "float64":
            text = "a number" + (f" >= {self.minimum:g}" if self.minimum is not None else "")
        elif self.choices:
            text = _either(self.choices)
        elif self.filled:
            text = "a name (not empty)"
        elif self.json == "list":
            text = "a JSON list of numbers"
        elif self.json == "object":
            text = "a JSON object"
        else:
            text = "text"
        return text if self.required or self.arrow == "string" else text + ", or empty"


def _either(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]


def _invariant_column(invariant_id: str, summary: str) -> Column:
    return Column(invariant_id, "int64", f"violations of `{invariant_id}` ({summary})", minimum=0)


COLUMNS: tuple[Column, ...] = (
    Column("format", "string", f"the results format, `{RESULTS_FORMAT}`"),
    Column("scenario", "string", "scenario name (a grid point's name carries its parameters)", filled=True),
    Column("strategy", "string", "the strategy's name: a built-in's, or the `name` of a `module:attr` strategy's `Strategy` (give `--strategy module:attr` to replay its runs)", filled=True),
    Column("backend", "string", "`memory`, `postgres` or `both` (memory and PostgreSQL compared)", choices=KINDS),
    Column("seed", "int64", "the run's seed: `racetrack run SCENARIO --strategy S --seed N` replays it", minimum=0),
    Column("jobs", "int64", "jobs the run simulated", minimum=0),
    Column("ops", "int64", "database operations, transaction control included", minimum=0),
    Column("round_trips", "int64", "round trips to the database (one per operation)", minimum=0),
    Column("statements", "int64", "SQL statements (operations other than BEGIN, COMMIT, ROLLBACK)", minimum=0),
    Column("lock_waits", "int64", "operations that waited for a row lock", minimum=0),
    Column("lock_wait_ms", "float64", "simulated time spent waiting for row locks, in ms", minimum=0),
    Column("crashes", "int64", "handler crashes (a handler raised something other than a tracker error)", required=False,
           minimum=0),
    Column("violating", "bool", "true when the run violated at least one invariant"),
    Column("violations", "int64", "violations of all invariants", minimum=0),
    *(_invariant_column(i.id, i.summary) for i in INVARIANTS),
    Column("first_violation", "string", "the first violation as one line (`invariant: job: detail`); empty when none"),
    Column("lag_p50_ms", "float64", "median visibility lag, in ms (empty when no job showed its state)", required=False),
    Column("lag_p99_ms", "float64", "99th percentile visibility lag, in ms", required=False),
    Column("lag_max_ms", "float64", "largest visibility lag, in ms", required=False),
    Column("visibility_lags_ms", "string",
           "JSON list: per job, how long after the true start and outcome a committed row first showed them, in ms",
           json="list"),
    Column("timestamp_errors_ms", "string",
           "JSON list: per job, recorded minus true `started_at` and `completed_at`/`failed_at`, in ms", json="list"),
    Column("sim_ms", "float64", "simulated time the run took, in ms", required=False, minimum=0),
    Column("params", "string", "JSON object: every scenario parameter of the run", json="object"),
    Column("error", "string", "why the run could not finish (the server went away); empty when it did", required=False),
    Column("disagreements", "int64",
           "`--backend both`: operations where memory and PostgreSQL answered differently (empty: not compared)",
           required=False, minimum=0),
    Column("first_disagreement", "string", "`--backend both`: the first disagreement as one line", required=False),
    Column("unknown", "string",
           "comma-separated IDs of invariants that could not be judged (their checker raised); empty when none",
           required=False),
    Column("conflict_orders", "string",
           "comma-separated digests, one per job whose row saw conflicting operations (different handlers, one "
           "writing), of the order they ran in: distinct digests over runs are distinct interleavings (coverage)",
           required=False),
)
#: Appended after :data:`COLUMNS` in a results file of live runs (``racetrack live --out``) only,
#: so a sweep's files keep their bytes; a file without ``mode`` holds simulated runs.
LIVE_COLUMNS: tuple[Column, ...] = (
    Column("mode", "string", "`live` for a run on a real queue and PostgreSQL (`racetrack live --out`), `sim` for a "
           "simulated one; a file without this column is simulated", required=False),
    Column("seconds", "float64", "live runs: the run's wall time, in s", required=False, minimum=0),
)
#: The values ``mode`` may hold.
MODES = ("sim", "live")
#: A column only in files of sweeps where some scenario has row invariants (``[invariants.rows]``):
#: files of every other sweep keep exactly the columns above.
ROW_INVARIANTS = "row_invariants"
ROW_INVARIANTS_COLUMN = Column(
    ROW_INVARIANTS, "string",
    "JSON object: violations (jobs affected) per row invariant of the scenario, by name (`[invariants.rows]`); "
    "only in files of sweeps where a scenario has row invariants, after every other column; also counted in "
    "`violations`, `violating` and `first_violation`",
    required=False, json="object",
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)


def columns_for(row_invariants: bool) -> tuple[Column, ...]:
    """The columns of a results file: :data:`COLUMNS`, and ``row_invariants`` when some
    scenario of the sweep has row invariants."""
    return (*COLUMNS, ROW_INVARIANTS_COLUMN) if row_invariants else COLUMNS
#: The columns every reader may rely on.
REQUIRED_COLUMNS = tuple(c.name for c in COLUMNS if c.required)
BY_NAME = {c.name: c for c in (*COLUMNS, *LIVE_COLUMNS)}


def reference() -> str:
    """``docs/results.md``: the results format, written from :data:`COLUMNS`."""
    rows = "\n".join(
        f"| `{c.name}` | {c.kind} | {'yes' if c.required else 'no'} | {c.meaning} |" for c in columns_for(True)
    )
    live_rows = "\n".join(f"| `{c.name}` | {c.kind} | {c.meaning} |" for c in LIVE_COLUMNS)
    return f"""<!-- Generated by `python -m sim.runs.columns > docs/results.md` from sim/runs/columns.py; do not edit. -->
# Results files (`{RESULTS_FORMAT}`)

`racetrack sweep --out FILE` writes one row per run to `FILE`: Parquet when the name ends in
`.parquet`, CSV when it ends in `.csv`. Rows come in a fixed order (scenario, strategy, then
seed), and the same sweep gives the same bytes however it was cut up, interrupted, resumed or
parallelized.

## Columns

In this order; every row's `format` is `{RESULTS_FORMAT}`. "Required" columns are in every
file of this format, and reports refuse a file without them; the others were added later or
are empty for some runs, and a reader must not rely on them. Empty means null in Parquet and
an empty field in CSV. A run that could not finish (`error` set) judged nothing: its counts are
0 and its measurements empty.

| column | type | required | meaning |
| --- | --- | --- | --- |
{rows}

The per-invariant columns are described in [invariants.md](invariants.md). An invariant a
scenario switches off (`[invariants] off`) is not judged: its column stays 0 in that scenario's
rows (its `params` record the `off` list). A scenario's own row invariants (`row:<name>`) have
no column each: they count in `violations`, `violating` and `first_violation`, and per name in
`row_invariants`, a column written only by sweeps where some scenario has row invariants.

## What a report accepts

`racetrack report` checks every cell of these columns (and of the live ones below) against its
type before it counts anything: a bool is `true` or `false` in any case (the sweep writes
`True`/`False`; in Parquet a bool column, or text as in CSV) and nothing else (not `1`, not
`" True"` with a space), an int64 a whole number, a `>= 0` number not below 0, a JSON column that
JSON as text (`[]` and `{{}}` are none; empty is no JSON), a name not empty; a cell is empty only
where the column is not required. Anything else is
refused in one line naming the file, the column, the row (counted from 1 after the header) and
its seed, the value and what is allowed; exit 2. Rows of runs that could not finish (`error`
set) are left out first, as every table leaves them out.

## Live results files

`racetrack live SCENARIO --out FILE` writes one row per live run (see [live.md](live.md)) with the
columns above, in the same order, and two more after them (a sweep's files do not have them):

| column | type | meaning |
| --- | --- | --- |
{live_rows}

`racetrack report` reads both kinds; a file without `mode` is simulated.

## Parquet and CSV

- Parquet: the types above, written in row groups of 10,000 rows.
- CSV: a header line, then one line per row (written by pandas): `true`/`false` are `True`/`False`,
  null is an empty field, the JSON columns are quoted text.

## While a sweep runs: `FILE.partial`

Finished rows are appended to `FILE.partial`, an Arrow IPC stream (zstd-compressed) whose schema
metadata key `racetrack.sweep` holds the sweep's fingerprint: a JSON object with `format`,
`scenarios` (name and every parameter, and `table_sha256`, the SHA-256 of the table SQL, for a
scenario that tracks a table of its own), `strategies`, `runs`, `seed`, `backend` (kind and
schema; never the DSN) and, when the sweep runs `module:attr` strategies from files,
`strategy_sha256` (each such strategy's file's SHA-256). `racetrack sweep --resume` continues a partial only when its
fingerprint equals the new sweep's, and reading stops at the last whole batch of a sweep that
was killed. When every run is done the stream is converted to `FILE` (written beside it as
`FILE.finalizing`, then renamed) and removed: a file under the real name is always complete. When some runs
could not finish (error rows), the partial is kept beside `FILE`, so that `--resume` runs exactly those again.
"""


if __name__ == "__main__":
    print(reference(), end="")
