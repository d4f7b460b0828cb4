"""A corpus of user mistakes: command lines, scenario files, traces, results files, strategies and
DSNs that a user can get wrong. Each must give one clear line on stderr and exit 2: never a
traceback, never exit 1 (which means "an invariant was violated"), never a hang.

A case is ``(name, argv, files)``: ``files`` maps a relative path to its text (written in a fresh
folder that is the working directory); ``{dir}`` in argv is that folder.
"""

from __future__ import annotations

import json

GOOD_SCENARIO = 'description = "x"\n[job]\ncount = 2\n'

SCENARIO_MISTAKES = {
    "toml-syntax": "[job\ncount = 2\n",
    "unknown-section": "[jobs]\ncount = 2\n",
    "unknown-key": "[job]\ncounts = 2\n",
    "top-level-unknown": "colour = 'red'\n",
    "count-string": '[job]\ncount = "ten"\n',
    "count-zero": "[job]\ncount = 0\n",
    "count-negative": "[job]\ncount = -3\n",
    "count-float": "[job]\ncount = 2.5\n",
    "count-bool": "[job]\ncount = true\n",
    "count-huge": "[job]\ncount = 100000000\n",
    "attempts-zero": "[job]\nattempts = 0\n",
    "fail-probability-above-1": "[job]\nfail_probability = 1.5\n",
    "fail-probability-negative": "[job]\nfail_probability = -0.1\n",
    "fail-probability-nan": "[job]\nfail_probability = nan\n",
    "delay-inf": "[job]\ndelay_ms = inf\n",
    "delay-negative": "[job]\ndelay_ms = -1\n",
    "dist-not-table": "[job]\nduration = 50\n",
    "dist-unknown-field": "[job]\nduration = { mean_ms = 50 }\n",
    "dist-min-above-max": "[job]\nduration = { min_ms = 9, max_ms = 3 }\n",
    "dist-p99-below-median": "[job]\nduration = { median_ms = 50, p99_ms = 10 }\n",
    "dist-negative-fixed": "[job]\nduration = { fixed_ms = -5 }\n",
    "dist-nan": "[job]\nduration = { fixed_ms = nan }\n",
    "dist-mixed-forms": "[job]\nduration = { fixed_ms = 5, median_ms = 3 }\n",
    "dist-empty": "[job]\nduration = {}\n",
    "backoff-type-unknown": '[backoff]\ntype = "linear"\n',
    "cancel-active-unknown": '[cancel]\nactive = "kill"\n',
    "cancel-active-bool": '[cancel]\nactive = true\n',
    "crash-probability-above-1": "[workers]\ncrash_probability = 1.5\n",
    "crash-probability-text": '[workers]\ncrash_probability = "often"\n',
    "crash-after-without-probability": "[workers]\ncrash_after = { fixed_ms = 100 }\n",
    "crash-after-negative": "[workers]\ncrash_probability = 0.1\ncrash_after = { fixed_ms = -5 }\n",
    "backoff-type-number": "[backoff]\ntype = 3\n",
    "jitter-above-1": "[backoff]\njitter = 2\n",
    "workers-zero": "[workers]\ncount = 0\n",
    "concurrency-huge": "[workers]\nconcurrency = 1000000\n",
    "lock-zero": "[workers]\nlock_duration_ms = 0\n",
    "stall-probability-text": '[stalls]\nprobability = "often"\n',
    "clock-offset-overflow": "[clocks]\nmax_offset_ms = 1e308\n",
    "clock-drift-negative": "[clocks]\nmax_drift_ppm = -5\n",
    "rtt-zero-median": "[network]\ndb_rtt = { median_ms = 0, p99_ms = 30 }\n",
    "section-is-value": "job = 3\n",
    "expect-bad-form": '[expect]\nnaive = "broken"\n',
    "expect-unknown-invariant": '[expect]\nnaive = "violates:no-such-thing"\n',
    "expect-not-string": "[expect]\nnaive = 1\n",
    "expect-search-text": '[expect]\nnaive = "any"\nsearch = "lots"\n',
    "expect-search-negative": '[expect]\nnaive = "any"\nsearch = -5\n',
    "description-not-text": "description = 5\n",
    "handlers-delay-negative": "[handlers]\nactive_delay_ms = -500\n",
    "slack-negative": "[invariants]\ntimestamp_slack_ms = -1\n",
    "host-offset-not-table": "[clocks.workers]\noffset = -50\n",
    "host-offset-min-above-max": "[clocks.workers]\noffset = { min_ms = -10, max_ms = -50 }\n",
    "host-offset-mixed-units": "[clocks.db]\noffset = { min_s = -1, max_ms = 5 }\n",
    "host-offset-beyond-an-hour": "[clocks.api]\noffset = { fixed_s = -7200 }\n",
    "host-offset-text": '[clocks.workers]\noffset = { fixed_ms = "late" }\n',
    "host-drift-in-ms": "[clocks.workers]\ndrift = { fixed_ms = 5 }\n",
    "host-drift-huge": "[clocks.db]\ndrift = { min_ppm = -1e9, max_ppm = 0 }\n",
    "host-unknown-group": "[clocks.redis]\noffset = { fixed_ms = 5 }\n",
    "host-unknown-key": "[clocks.workers]\nskew = { fixed_ms = 5 }\n",
    "host-group-not-table": "[clocks]\nworkers = 5\n",
    "host-step-without-when": "[clocks.workers]\nstep = { fixed_ms = -200 }\n",
    "host-step-at-without-step": "[clocks.db]\nstep_at = { fixed_ms = 200 }\n",
    "host-step-at-negative": "[clocks.db]\nstep = { fixed_ms = 5 }\nstep_at = { fixed_ms = -1 }\n",
    "network-read-rtt-not-dist": "[network]\nread_rtt = 5\n",
    "network-commit-rtt-negative": "[network]\ncommit_rtt = { fixed_ms = -1 }\n",
    "network-host-rtt-unknown-group": "[network.redis]\ndb_rtt = { fixed_ms = 1 }\n",
    "network-host-unknown-key": "[network.workers]\nrtt = { fixed_ms = 1 }\n",
    "network-pause-probability-above-1": "[network]\npause_probability = 2\npause = { fixed_ms = 1000 }\n",
    "network-pause-without-probability": "[network]\npause = { fixed_ms = 1000 }\n",
    "network-probability-without-pause": "[network]\npause_probability = 0.1\n",
    "network-pool-zero": "[network]\npool_size = 0\n",
    "network-pool-float": "[network]\npool_size = 1.5\n",
    "network-client-unknown": '[network]\nclient = "grpc"\n',
    "network-http-rtt-text": '[network]\nclient = "http"\nhttp_rtt = "slow"\n',
    "classes-not-table": "[job]\nclasses = 3\n",
    "classes-empty": "[job]\nclasses = {}\n",
    "class-not-table": "[job.classes]\nfast = 0.5\n",
    "class-without-share": "[job.classes.fast]\nduration = { fixed_ms = 50 }\n",
    "class-share-above-1": "[job.classes.fast]\nshare = 1.5\n",
    "class-shares-not-1": "[job.classes.fast]\nshare = 0.5\n[job.classes.slow]\nshare = 0.2\n",
    "class-unknown-key": "[job.classes.fast]\nshare = 1\nspeed = 3\n",
    "class-attempts-zero": "[job.classes.fast]\nshare = 1\nattempts = 0\n",
    "class-duration-bad": "[job.classes.fast]\nshare = 1\nduration = { fixed_ms = -5 }\n",
    "listeners-source-unknown": '[listeners]\nsource = "redis"\n',
    "listeners-delay-not-dist": '[listeners]\nsource = "queue-events"\ndelay = 5\n',
    "listeners-miss-above-1": '[listeners]\nsource = "queue-events"\nmiss_probability = 1.2\n',
    "listeners-delay-without-queue-events": "[listeners]\ndelay = { fixed_ms = 5 }\n",
    "network-http-rtt-without-http-client": "[network]\nhttp_rtt = { fixed_ms = 20 }\n",
    "listeners-miss-on-worker-events": '[listeners]\nsource = "worker"\nmiss_probability = 0.1\n',
    "clock-host-offset-inf": "[clocks.db]\noffset = { fixed_ms = inf }\n",
    "clock-host-drift-text": '[clocks.workers]\ndrift = "fast"\n',
    "clock-host-step-not-dist": "[clocks.api]\nstep = -200\nstep_at = { fixed_ms = 10 }\n",
    "network-write-rtt-min-above-max": "[network]\nwrite_rtt = { min_ms = 9, max_ms = 3 }\n",
    "network-read-rtt-nan": "[network]\nread_rtt = { fixed_ms = nan }\n",
    "network-host-db-rtt-negative": "[network.workers]\ndb_rtt = { fixed_ms = -2 }\n",
    "network-client-number": "[network]\nclient = 3\n",
    "network-pool-text": '[network]\npool_size = "big"\n',
    "network-pool-negative": "[network]\npool_size = -4\n",
    "class-share-negative": "[job.classes.fast]\nshare = -0.5\n[job.classes.slow]\nshare = 1.5\n",
    "class-share-text": '[job.classes.fast]\nshare = "half"\n',
    "class-fail-probability-above-1": "[job.classes.fast]\nshare = 1\nfail_probability = 3\n",
    "listeners-not-table": "listeners = 3\n",
    "listeners-unknown-key": '[listeners]\nsource = "queue-events"\nlag = 5\n',
    "listeners-source-number": "[listeners]\nsource = 1\n",
    "expect-search-float": '[expect]\nnaive = "any"\nsearch = 2.5\n',
    "expect-search-bool": '[expect]\nnaive = "any"\nsearch = true\n',
    "expect-search-huge": '[expect]\nnaive = "any"\nsearch = 1000000000000\n',
    "empty-file-bad-utf8": None,  # written as bytes below
}

VALID_TRACE_KEYS = ("format", "scenario", "strategy", "seed", "case", "schedule")


def scenario_cases() -> list[tuple[str, list[str], dict[str, str | bytes]]]:
    cases: list[tuple[str, list[str], dict[str, str | bytes]]] = []
    for name, text in SCENARIO_MISTAKES.items():
        content: str | bytes = text if text is not None else b"\xff\xfe not utf-8 \xff"
        cases.append((f"scenario/{name}/run", ["run", "bad.toml"], {"bad.toml": content}))
    # the same file reaches other commands too: each must say the same one line
    for name in ("unknown-key", "count-zero", "dist-min-above-max", "expect-unknown-invariant"):
        text = SCENARIO_MISTAKES[name]
        assert text is not None
        cases.append((f"scenario/{name}/sweep", ["sweep", "bad.toml", "--runs", "2"], {"bad.toml": text}))
        cases.append((f"scenario/{name}/explore", ["explore", "bad.toml", "--budget", "2"], {"bad.toml": text}))
    cases.append(("scenario/{name}/check", ["check", "bad.toml"], {"bad.toml": SCENARIO_MISTAKES["expect-bad-form"] or ""}))
    cases.append(("scenario/missing-file", ["run", "nope.toml"], {}))
    cases.append(("scenario/unknown-name", ["run", "no-such-scenario"], {}))
    cases.append(("scenario/a-directory", ["run", "adir.toml"], {"adir.toml/x": "x"}))
    return cases


_TABLE = "CREATE TABLE job_status (job_id text PRIMARY KEY, status text NOT NULL DEFAULT 'pending'{extra});\n"

TABLE_SQL_MISTAKES = {
    "syntax-error": "CREATE TABLE job_status (job_id text PRIMARY KEY,, status text);\n",
    "no-table": "CREATE TYPE s AS ENUM ('a');\n",
    "two-tables": _TABLE.format(extra="") + _TABLE.format(extra="").replace("job_status", "other"),
    "no-primary-key": "CREATE TABLE job_status (job_id text, status text);\n",
    "two-column-key": "CREATE TABLE job_status (job_id text, n int, status text, PRIMARY KEY (job_id, n));\n",
    "schema-qualified": "CREATE TABLE public.job_status (job_id text PRIMARY KEY);\n",
    "unmodelled-uuid": _TABLE.format(extra=",\n owner uuid"),
    "unmodelled-foreign-key": _TABLE.format(extra=",\n owner text REFERENCES owners (id)"),
    "unmodelled-text-order": _TABLE.format(extra=",\n CHECK (status < 'z')"),
    "unmodelled-arithmetic": _TABLE.format(extra=",\n n int CHECK (n + 1 > 0)"),
    "unmodelled-unique": _TABLE.format(extra=",\n owner text UNIQUE"),
    "unmodelled-trigger": _TABLE.format(extra="") + (
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.status := 'x'; RETURN NEW; END $$;\n"
        "CREATE TRIGGER t BEFORE UPDATE ON job_status FOR EACH ROW EXECUTE FUNCTION f();\n"),
    "unknown-column-in-check": _TABLE.format(extra=",\n CHECK (nope IS NULL)"),
    "bad-enum-label": "CREATE TYPE s AS ENUM ('a');\n" + _TABLE.format(extra="").replace("text NOT NULL DEFAULT 'pending'", "s NOT NULL DEFAULT 'pending'"),
    # statements that would reach past racetrack's schema or outlive it: refused for every backend
    "beyond-schema-role": _TABLE.format(extra="") + "CREATE ROLE leak;\n",
    "beyond-schema-set": _TABLE.format(extra="") + "SET search_path = public;\n",
    "beyond-schema-transaction": "BEGIN;\n" + _TABLE.format(extra="") + "COMMIT;\n",
    "beyond-schema-qualified-index": _TABLE.format(extra="") + "CREATE INDEX i ON public.job_status (status);\n",
}


#: What the invariants read in the table, a scenario's own rules: each mistake named at load time.
LIFECYCLE_MISTAKES = {
    "columns-missing-column": '[table.columns]\nstatus = "state"\n',
    "columns-unknown-role": '[table.columns]\nowner = "owner_id"\n',
    "columns-wrong-type": '[table.columns]\nattempts = "error_message"\n',
    "columns-empty-status": '[table.columns]\nstatus = ""\n',
    "statuses-unknown-state": '[table.statuses]\nfinished = ["completed"]\n',
    "statuses-not-a-list": '[table.statuses]\nremoved = "cancelled"\n',
    "off-unknown-invariant": '[invariants]\noff = ["faithful-timestamp"]\n',
    "off-not-a-list": '[invariants]\noff = "faithful-timestamps"\n',
    "row-bad-sql": '[invariants.rows]\npaid = "status <> "\n',
    "row-two-statements": '[invariants.rows]\nx = "true; DROP TABLE job_status"\n',
    "row-unknown-column": '[invariants.rows]\nx = "amount IS NOT NULL"\n',
    "row-arithmetic": '[invariants.rows]\nx = "attempts + 1 > 0"\n',
    "row-subquery": '[invariants.rows]\nx = "status IN (SELECT status FROM job_status)"\n',
    "row-now": '[invariants.rows]\nx = "created_at <= now()"\n',
    "row-not-boolean": '[invariants.rows]\nx = "attempts"\n',
    "row-bad-name": '[invariants.rows]\n"a b" = "true"\n',
    "expect-undeclared-row": '[expect]\nnaive = "violates:row:nope"\n',
    "expect-switched-off": '[invariants]\noff = ["terminal-status"]\n[expect]\nnaive = "violates:terminal-status"\n',
}


def lifecycle_cases() -> list[tuple[str, list[str], dict[str, str | bytes]]]:
    """A column mapping, ``off`` list or row invariant the scenario cannot have (also against a
    table of the user's, and with ``--table-sql``)."""
    cases: list[tuple[str, list[str], dict[str, str | bytes]]] = []
    for name, text in LIFECYCLE_MISTAKES.items():
        cases.append((f"lifecycle/{name}/run", ["run", "s.toml"], {"s.toml": text}))
    renamed = "CREATE TABLE job_status (job_id text PRIMARY KEY, state text NOT NULL DEFAULT 'pending');\n"
    cases.append(("lifecycle/own-table-default-mapping", ["run", "s.toml"],
                  {"t.sql": renamed, "s.toml": '[table]\nsql = "t.sql"\n'}))
    cases.append(("lifecycle/table-sql-flag-breaks-mapping", ["sweep", "s.toml", "--runs", "1", "--table-sql", "t.sql"],
                  {"t.sql": renamed, "s.toml": '[table.columns]\nstatus = "status"\n'}))
    enum = "CREATE TYPE s AS ENUM ('pending', 'active');\n" + renamed.replace("state text", "status s")
    cases.append(("lifecycle/status-not-an-enum-label", ["run", "s.toml"],
                  {"t.sql": enum, "s.toml": '[table]\nsql = "t.sql"\n[table.columns]\nattempts = ""\ncreated_at = ""\n'
                   'started_at = ""\ncompleted_at = ""\nfailed_at = ""\ncancelled = ""\ncancelled_at = ""\n'}))
    return cases


def table_sql_cases() -> list[tuple[str, list[str], dict[str, str | bytes]]]:
    """A table SQL file no backend can use, or the memory model cannot reproduce exactly."""
    cases: list[tuple[str, list[str], dict[str, str | bytes]]] = []
    for name, text in TABLE_SQL_MISTAKES.items():
        cases.append((f"table-sql/{name}/flag", ["run", "seed-fast-jobs", "--table-sql", "t.sql"], {"t.sql": text}))
        cases.append((f"table-sql/{name}/scenario", ["sweep", "s.toml", "--runs", "1", "--workers", "1"],
                      {"t.sql": text, "s.toml": '[table]\nsql = "t.sql"\n'}))
    cases.append(("table-sql/missing-flag-file", ["run", "seed-fast-jobs", "--table-sql", "nope.sql"], {}))
    cases.append(("table-sql/missing-scenario-file", ["run", "s.toml"], {"s.toml": '[table]\nsql = "nope.sql"\n'}))
    cases.append(("table-sql/not-a-string", ["run", "s.toml"], {"s.toml": "[table]\nsql = 3\n"}))
    return cases


def cli_cases() -> list[tuple[str, list[str], dict[str, str | bytes]]]:
    c: list[tuple[str, list[str], dict[str, str | bytes]]] = [
        ("cli/no-command", [], {}),
        ("cli/unknown-command", ["frobnicate"], {}),
        ("cli/unknown-flag", ["run", "seed-fast-jobs", "--frob"], {}),
        ("cli/run-no-scenario", ["run"], {}),
        ("cli/run-seed-text", ["run", "seed-fast-jobs", "--seed", "abc"], {}),
        ("cli/run-seed-negative", ["run", "seed-fast-jobs", "--seed", "-1"], {}),
        ("cli/run-seed-float", ["run", "seed-fast-jobs", "--seed", "1.5"], {}),
        ("cli/run-strategy-empty", ["run", "seed-fast-jobs", "--strategy", ""], {}),
        ("cli/run-strategy-unknown", ["run", "seed-fast-jobs", "--strategy", "nave"], {}),
        ("cli/run-strategy-no-module", ["run", "seed-fast-jobs", "--strategy", "no_such_mod:S"], {}),
        ("cli/run-strategy-no-attr", ["run", "seed-fast-jobs", "--strategy", "mystrat:NOPE"], {"mystrat.py": "X = 1\n"}),
        ("cli/run-strategy-not-strategy", ["run", "seed-fast-jobs", "--strategy", "mystrat:X"], {"mystrat.py": "X = 1\n"}),
        ("cli/run-strategy-import-error", ["run", "seed-fast-jobs", "--strategy", "brokenmod:S"], {"brokenmod.py": "import no_such_dependency\n"}),
        ("cli/run-strategy-syntax-error", ["run", "seed-fast-jobs", "--strategy", "syntaxmod:S"], {"syntaxmod.py": "def (:\n"}),
        ("cli/run-backend-unknown", ["run", "seed-fast-jobs", "--backend", "mysql"], {}),
        ("cli/sweep-runs-zero", ["sweep", "--runs", "0"], {}),
        ("cli/sweep-runs-negative", ["sweep", "--runs", "-5"], {}),
        ("cli/sweep-runs-text", ["sweep", "--runs", "many"], {}),
        ("cli/sweep-runs-huge", ["sweep", "--runs", "1000000000000"], {}),
        ("cli/sweep-workers-zero", ["sweep", "--workers", "0", "--runs", "1"], {}),
        ("cli/sweep-workers-huge", ["sweep", "--workers", "10000", "--runs", "1"], {}),
        ("cli/sweep-strategies-empty", ["sweep", "--strategies", "", "--runs", "1"], {}),
        ("cli/sweep-strategies-commas", ["sweep", "--strategies", ",,", "--runs", "1"], {}),
        ("cli/sweep-strategies-one-bad", ["sweep", "--strategies", "naive,nope", "--runs", "1"], {}),
        ("cli/sweep-out-bad-suffix", ["sweep", "seed-fast-jobs", "--runs", "1", "--out", "r.txt"], {}),
        ("cli/sweep-out-is-directory", ["sweep", "seed-fast-jobs", "--runs", "1", "--out", "adir.parquet"], {"adir.parquet/x": "x"}),
        ("cli/sweep-out-unwritable", ["sweep", "seed-fast-jobs", "--runs", "1", "--out", "/proc/racetrack/r.parquet"], {}),
        ("cli/sweep-resume-without-out", ["sweep", "seed-fast-jobs", "--runs", "1", "--resume"], {}),
        ("cli/sweep-resume-nothing", ["sweep", "seed-fast-jobs", "--runs", "1", "--out", "r.parquet", "--resume"], {}),
        ("cli/sweep-grid-no-equals", ["sweep", "seed-fast-jobs", "--runs", "1", "--grid", "job.count"], {}),
        ("cli/sweep-grid-unknown-path", ["sweep", "seed-fast-jobs", "--runs", "1", "--grid", "job.colour=1,2"], {}),
        ("cli/sweep-grid-bad-value", ["sweep", "seed-fast-jobs", "--runs", "1", "--grid", "job.count=a,b"], {}),
        ("cli/sweep-grid-out-of-range", ["sweep", "seed-fast-jobs", "--runs", "1", "--grid", "job.count=0,1"], {}),
        ("cli/sweep-grid-empty-values", ["sweep", "seed-fast-jobs", "--runs", "1", "--grid", "job.count="], {}),
        ("cli/sweep-executor-unknown", ["sweep", "--executor", "spark", "--runs", "1"], {}),
        ("cli/sweep-scheduler-not-url", ["sweep", "seed-fast-jobs", "--runs", "1", "--scheduler", "not a url"], {}),
        ("cli/sweep-report-is-file", ["sweep", "seed-fast-jobs", "--runs", "1", "--report", "afile"], {"afile": "x"}),
        ("cli/check-search-negative", ["check", "seed-fast-jobs", "--search", "-1"], {}),
        ("cli/check-search-text", ["check", "seed-fast-jobs", "--search", "lots"], {}),
        ("cli/check-search-huge", ["check", "seed-fast-jobs", "--search", "1000000000000"], {}),
        ("cli/explore-worlds-zero", ["explore", "seed-fast-jobs", "--method", "pct", "--worlds", "0"], {}),
        ("cli/explore-worlds-text", ["explore", "seed-fast-jobs", "--method", "pct", "--worlds", "many"], {}),
        ("cli/explore-worlds-negative", ["explore", "seed-fast-jobs", "--method", "pct", "--worlds", "-2"], {}),
        ("cli/live-no-scenario", ["live"], {}),
        ("cli/live-unknown-scenario", ["live", "no-such-scenario"], {}),
        ("cli/live-bad-scenario-file", ["live", "bad.toml"], {"bad.toml": "[job]\ncount = 0\n"}),
        ("cli/live-strategy-unknown", ["live", "seed-fast-jobs", "--strategy", "nope"], {}),
        ("cli/live-runs-zero", ["live", "seed-fast-jobs", "--runs", "0"], {}),
        ("cli/live-runs-huge", ["live", "seed-fast-jobs", "--runs", "1000000000000"], {}),
        ("cli/live-seed-negative", ["live", "seed-fast-jobs", "--seed", "-1"], {}),
        ("cli/live-time-zero", ["live", "seed-fast-jobs", "--time", "0"], {}),
        ("cli/live-time-text", ["live", "seed-fast-jobs", "--time", "soon"], {}),
        ("cli/live-redis-unreachable", ["live", "seed-fast-jobs", "--redis", "redis://:secret@127.0.0.1:1"], {}),
        ("cli/live-redis-not-a-url", ["live", "seed-fast-jobs", "--redis", "not a url"], {}),
        ("cli/calibrate-no-scenario", ["calibrate"], {}),
        ("cli/calibrate-unknown-scenario", ["calibrate", "no-such-scenario"], {}),
        ("cli/calibrate-runs-zero", ["calibrate", "seed-fast-jobs", "--runs", "0"], {}),
        ("cli/calibrate-sim-runs-text", ["calibrate", "seed-fast-jobs", "--sim-runs", "x"], {}),
        ("cli/calibrate-strategy-unknown", ["calibrate", "seed-fast-jobs", "--strategy", "nope"], {}),
        ("cli/calibrate-fit-is-directory", ["calibrate", "seed-fast-jobs", "--fit", "adir"], {"adir/x": "x"}),
        ("cli/calibrate-redis-unreachable", ["calibrate", "seed-fast-jobs", "--runs", "1", "--redis", "redis://127.0.0.1:1"], {}),
        ("cli/clean-unknown-flag", ["clean", "--all"], {}),
        ("cli/clean-extra-arg", ["clean", "everything"], {}),
        ("cli/clean-dsn-unreachable", ["clean", "--dsn", "postgresql://postgres:secret@127.0.0.1:1/test?connect_timeout=2"], {}),
        ("cli/clean-dsn-bad-timeout", ["clean", "--dsn", "postgresql://postgres@127.0.0.1/test?connect_timeout=abc"], {}),
        ("cli/clean-redis-unreachable", ["clean", "--redis", "redis://:secret@127.0.0.1:1"], {}),
        ("cli/clean-redis-not-a-url", ["clean", "--redis", "ftp://nowhere"], {}),
        ("cli/table-sql-empty-file", ["run", "seed-fast-jobs", "--table-sql", "t.sql"], {"t.sql": ""}),
        ("cli/table-sql-is-directory", ["run", "seed-fast-jobs", "--table-sql", "adir"], {"adir/x": "x"}),
        ("cli/table-sql-not-utf8", ["run", "seed-fast-jobs", "--table-sql", "t.sql"], {"t.sql": b"\xff\xfe CREATE"}),
        ("cli/sweep-table-sql-missing", ["sweep", "seed-fast-jobs", "--runs", "1", "--table-sql", "nope.sql"], {}),
        ("cli/check-runs-zero", ["check", "--runs", "0"], {}),
        ("cli/check-junit-is-directory", ["check", "seed-fast-jobs", "--runs", "1", "--junit", "adir"], {"adir/x": "x"}),
        ("cli/check-junit-unwritable", ["check", "seed-fast-jobs", "--runs", "1", "--junit", "/proc/racetrack/j.xml"], {}),
        ("cli/check-no-expect", ["check", "mine.toml"], {"mine.toml": GOOD_SCENARIO}),
        ("cli/explore-method-unknown", ["explore", "seed-fast-jobs", "--method", "magic"], {}),
        ("cli/explore-budget-zero", ["explore", "seed-fast-jobs", "--budget", "0"], {}),
        ("cli/explore-budget-and-time", ["explore", "seed-fast-jobs", "--budget", "3", "--time", "1"], {}),
        ("cli/explore-time-zero", ["explore", "seed-fast-jobs", "--time", "0"], {}),
        ("cli/explore-time-nan", ["explore", "seed-fast-jobs", "--time", "nan"], {}),
        ("cli/explore-time-inf", ["explore", "seed-fast-jobs", "--time", "inf"], {}),
        ("cli/explore-depth-zero", ["explore", "seed-fast-jobs", "--method", "pct", "--depth", "0"], {}),
        ("cli/explore-window-negative", ["explore", "seed-fast-jobs", "--method", "pct", "--window", "-1"], {}),
        ("cli/explore-invariants-unknown", ["explore", "seed-fast-jobs", "--invariants", "no-such", "--budget", "2"], {}),
        ("cli/explore-invariants-empty", ["explore", "seed-fast-jobs", "--invariants", ",", "--budget", "2", "--method", "random"], {}),
        ("cli/explore-jobs-zero", ["explore", "seed-fast-jobs", "--jobs", "0"], {}),
        ("cli/explore-exhaustive-time", ["explore", "seed-fast-jobs", "--method", "exhaustive", "--time", "1"], {}),
        ("cli/explore-out-is-directory", ["explore", "seed-fast-jobs", "--method", "random", "--budget", "50", "--out", "adir"], {"adir/x": "x"}),
        ("cli/explore-out-unwritable", ["explore", "seed-fast-jobs", "--method", "random", "--budget", "50", "--out", "/proc/racetrack/t.json"], {}),
        ("cli/replay-no-trace", ["replay"], {}),
        ("cli/replay-missing-trace", ["replay", "nope.json"], {}),
        ("cli/replay-strategy-unknown", ["replay", "t.json", "--strategy", "nope"], {}),
        ("cli/export-nothing-asked", ["export", "t.json"], {}),
        ("cli/export-pytest-is-directory", ["export", "t.json", "--pytest", "adir"], {"adir/x": "x"}),
        ("cli/export-isolation-unwritable", ["export", "t.json", "--isolation", "/proc/racetrack/x.spec"], {}),
        ("cli/export-strategy-unknown", ["export", "t.json", "--pytest", "x.py", "--strategy", "nope"], {}),
        ("cli/report-no-inputs", ["report", "-o", "out"], {}),
        ("cli/report-no-out", ["report", "r.csv"], {}),
        ("cli/report-out-is-file", ["report", "r.csv", "-o", "afile"], {"afile": "x"}),
        ("cli/report-missing-input", ["report", "nope.parquet", "-o", "out"], {}),
        ("cli/report-unknown-suffix", ["report", "r.txt", "-o", "out"], {"r.txt": "hello"}),
        ("cli/run-max-run-seconds-huge", ["run", "seed-fast-jobs", "--max-run-seconds", "1e10"], {}),
        ("cli/run-table-sql-empty", ["run", "seed-fast-jobs", "--table-sql", ""], {}),
        ("cli/sweep-last-seed-past-max", ["sweep", "seed-fast-jobs", "--runs", "2", "--seed", str(2**63 - 1)], {}),
        ("cli/sweep-strategy-twice", ["sweep", "seed-fast-jobs", "--runs", "1", "--strategies", "naive,naive"], {}),
        ("cli/sweep-local-with-scheduler", ["sweep", "seed-fast-jobs", "--runs", "1", "--executor", "local",
                                            "--scheduler", "tcp://127.0.0.1:1"], {}),
        ("cli/sweep-grid-without-partner", ["sweep", "seed-fast-jobs", "--runs", "1", "--grid", "network.pause_probability=0,0.5"], {}),
        ("cli/sweep-over-an-interrupted-partial", ["sweep", "seed-fast-jobs", "--runs", "2", "--out", "r.parquet"],
         {"r.parquet.partial": "an interrupted sweep's runs"}),
        ("cli/sweep-grid-same-value-twice", ["sweep", "seed-fast-jobs", "--runs", "1", "--grid", "job.count=2,02"], {}),
        ("cli/sweep-scheduler-empty", ["sweep", "seed-fast-jobs", "--runs", "1", "--scheduler", ""], {}),
        ("cli/calibrate-fit-empty", ["calibrate", "seed-fast-jobs", "--fit="], {}),
        ("cli/calibrate-sim-runs-below-runs", ["calibrate", "seed-fast-jobs", "--runs", "3", "--sim-runs", "1"], {}),
        ("cli/clean-dsn-empty", ["clean", "--dsn", ""], {}),
        ("cli/clean-redis-empty", ["clean", "--redis", ""], {}),
        ("cli/check-traces-is-a-file", ["check", "seed-fast-jobs", "--runs", "1", "--traces", "afile"], {"afile": "x"}),
        ("cli/scenarios-extra-arg", ["scenarios", "extra"], {}),
        ("cli/invariants-extra-flag", ["invariants", "--all"], {}),
    ]
    return c


def _trace_variants(good: dict) -> dict[str, object]:
    """Ways to break a valid trace (``good``) by hand."""
    first_actor = good["actors"][0]["name"]
    return {
        "not-json": "{ this is not json",
        "json-list": [1, 2, 3],
        "empty-object": {},
        "wrong-format": {**good, "format": "racetrack-trace/99"},
        "format-number": {**good, "format": 2},
        "digest-mismatch": {**good, "seed": good["seed"] + 1},
        "no-actors": {k: v for k, v in good.items() if k not in ("actors", "digest")},
        "actors-not-list": {**{k: v for k, v in good.items() if k != "digest"}, "actors": 5},
        "no-schedule": {k: v for k, v in good.items() if k not in ("schedule", "digest")},
        "schedule-not-list": {**{k: v for k, v in good.items() if k != "digest"}, "schedule": first_actor},
        "schedule-unknown-actor": {**{k: v for k, v in good.items() if k != "digest"}, "schedule": ["nobody#1"] * 3},
        "schedule-repeated": {**{k: v for k, v in good.items() if k != "digest"}, "schedule": list(good["schedule"]) * 50},
        "schedule-truncated": {**{k: v for k, v in good.items() if k != "digest"}, "schedule": list(good["schedule"])[:1]},
        "seed-text": {**{k: v for k, v in good.items() if k != "digest"}, "seed": "zero"},
        "seed-negative": {**{k: v for k, v in good.items() if k != "digest"}, "seed": -3},
        "strategy-unknown": {**{k: v for k, v in good.items() if k != "digest"}, "strategy": "no-such-strategy"},
        "strategy-number": {**{k: v for k, v in good.items() if k != "digest"}, "strategy": 7},
        "scenario-number": {**{k: v for k, v in good.items() if k != "digest"}, "scenario": 7},
        "negative-job-count": {**{k: v for k, v in good.items() if k != "digest"}, "params": {**good["params"], "job.count": -4}},
        "unknown-param": {**{k: v for k, v in good.items() if k != "digest"}, "params": {**good["params"], "job.colour": 1}},
        "clocks-no-db": {**{k: v for k, v in good.items() if k != "digest"},
                         "clocks": {h: c for h, c in good["clocks"].items() if h != "db"}},
        "steps-not-list": {**{k: v for k, v in good.items() if k != "digest"}, "steps": {}},
        "deaths-not-pairs": {**{k: v for k, v in good.items() if k != "digest"}, "deaths": [[1]]},
        "deaths-unknown-host": {**{k: v for k, v in good.items() if k != "digest"}, "deaths": [[5, "worker-99"]]},
        "deaths-negative-time": {**{k: v for k, v in good.items() if k != "digest"}, "deaths": [[-5, "db"]]},
        "queued-not-table": {**{k: v for k, v in good.items() if k != "digest"}, "queued": [1, 2]},
        "queued-unknown-session": {**{k: v for k, v in good.items() if k != "digest"}, "queued": {"nobody#1": [3]}},
        "branches-bad-latency": {**{k: v for k, v in good.items() if k != "digest"}, "branches": {f"{first_actor}/1": [[1]]}},
        "schedule-bad-statement": {**{k: v for k, v in good.items() if k != "digest"},
                                   "schedule": [f"{first_actor}/x" if n == first_actor else n for n in good["schedule"]]},
        "strategy-source-not-table": {**{k: v for k, v in good.items() if k != "digest"},
                                      "strategy": "gone_module:HANDLERS", "strategy_source": "here"},
        "strategy-source-missing-root": {**{k: v for k, v in good.items() if k != "digest"},
                                         "strategy": "gone_module:HANDLERS",
                                         "strategy_source": {"ref": "gone_module:HANDLERS", "root": "/nonexistent/dir",
                                                             "file": "/nonexistent/dir/gone_module.py", "sha256": "0" * 64}},
    }


def trace_cases(good_trace: dict) -> list[tuple[str, list[str], dict[str, str | bytes]]]:
    cases: list[tuple[str, list[str], dict[str, str | bytes]]] = []
    for name, value in _trace_variants(good_trace).items():
        text = value if isinstance(value, str) else json.dumps(value)
        cases.append((f"trace/{name}/replay", ["replay", "t.json"], {"t.json": text}))
        if name in ("not-json", "wrong-format", "digest-mismatch", "schedule-unknown-actor", "strategy-unknown"):
            cases.append((f"trace/{name}/export", ["export", "t.json", "--isolation", "x.spec"], {"t.json": text}))
            cases.append((f"trace/{name}/report", ["report", "t.json", "-o", "out"], {"t.json": text}))
    cases.append(("trace/binary", ["replay", "t.json"], {"t.json": b"\x00\x01\x02\xff"}))
    return cases


def _live_results_csv(mode: str) -> str:
    """A live results file whose one row is well formed except, perhaps, its ``mode``."""
    from sim.runs.columns import COLUMNS, RESULTS_FORMAT

    kinds = {"int64": "0", "float64": "0.0", "bool": "False", "string": ""}
    row = {c.name: kinds[c.arrow] for c in COLUMNS}
    row.update({"format": RESULTS_FORMAT, "scenario": "seed-fast-jobs", "strategy": "naive", "backend": "postgres", "jobs": "1",
                "visibility_lags_ms": "[]", "timestamp_errors_ms": "[]", "params": "{}", "mode": mode, "seconds": "1.5"})
    return ",".join(row) + "\n" + ",".join(f'"{v}"' if v.startswith(("[", "{")) else v for v in row.values()) + "\n"


def _calibration(drop: str) -> str:
    """``racetrack calibrate --json`` output with the field ``drop`` missing from its first invariant."""
    row = {"invariant": "no-rejected-writes", "sim_rate": 1.0, "sim_ci": [0.98, 1.0], "live_rate": 1.0,
           "live_ci": [0.57, 1.0], "consistent": True}
    row.pop(drop)
    return json.dumps({"scenario": "s", "strategy": "naive", "runs": {"sim": 200, "live": 5}, "invariants": [row],
                       "consistent": True})


def results_cases() -> list[tuple[str, list[str], dict[str, str | bytes]]]:
    return [
        ("results/live-bad-mode", ["report", "r.csv", "-o", "out"], {"r.csv": _live_results_csv("replayed")}),
        ("results/calibration-missing-live-ci", ["report", "cal.json", "-o", "out"], {"cal.json": _calibration("live_ci")}),
        ("results/calibration-missing-consistent", ["report", "cal.json", "-o", "out"], {"cal.json": _calibration("consistent")}),
        ("cli/live-out-not-results", ["live", "seed-fast-jobs", "--out", "runs.txt"], {}),
        ("cli/calibrate-out-not-json", ["calibrate", "seed-fast-jobs", "--out", "cal.csv"], {}),
        ("results/empty-csv", ["report", "r.csv", "-o", "out"], {"r.csv": ""}),
        ("results/header-only", ["report", "r.csv", "-o", "out"], {"r.csv": "a,b,c\n"}),
        ("results/garbage-csv", ["report", "r.csv", "-o", "out"], {"r.csv": "\x00\x01,,,\n\"unterminated\n"}),
        ("results/not-parquet", ["report", "r.parquet", "-o", "out"], {"r.parquet": "this is not parquet"}),
        ("results/empty-parquet", ["report", "r.parquet", "-o", "out"], {"r.parquet": b""}),
        ("results/wrong-format-column", ["report", "r.csv", "-o", "out"], {"r.csv": "format,scenario\nother/1,x\n"}),
        ("results/json-not-trace", ["report", "r.json", "-o", "out"], {"r.json": '{"hello": 1}'}),
        ("results/partial-as-input", ["report", "r.parquet.partial", "-o", "out"], {"r.parquet.partial": "x"}),
        ("results/resume-corrupt-partial", ["sweep", "seed-fast-jobs", "--runs", "2", "--out", "r.parquet", "--resume"],
         {"r.parquet.partial": "corrupt"}),
    ]


BAD_HANDLERS = {
    "not-a-generator": "def h(job, ctx):\n    return Update(job.id, {'status': 'active'})\n",
    "yields-a-string": "def h(job, ctx):\n    yield 'UPDATE job_status SET status = 1'\n",
    "unknown-column": "def h(job, ctx):\n    yield Update(job.id, {'colour': 'red'})\n",
    # a column chosen at run time: no load-time check can see it; the run ends at the yield
    "unknown-column-at-run-time": "def h(job, ctx):\n    column = 'col' + 'our'\n    yield Update(job.id, {column: 'red'})\n",
    "wrong-type": "def h(job, ctx):\n    yield Update(job.id, {'attempts': 'many'})\n",
    "sleep-nan": "def h(job, ctx):\n    yield Sleep(float('nan'))\n",
    "sleep-inf": "def h(job, ctx):\n    yield Sleep(float('inf'))\n",
    "sleep-negative": "def h(job, ctx):\n    yield Sleep(-5)\n",
    "sleep-text": "def h(job, ctx):\n    yield Sleep('5')\n",
    "raises": "def h(job, ctx):\n    yield Select(job.id)\n    raise RuntimeError('boom')\n",
    "wrong-signature": "def h(job):\n    yield Select(job.id)\n",
    "select-loop": "def h(job, ctx):\n    while True:\n        yield Select(job.id)\n",
    "sleep-loop": "def h(job, ctx):\n    while True:\n        yield Sleep(1)\n",
    "clock-loop": "def h(job, ctx):\n    while True:\n        yield ReadClock()\n",
    "busy-loop": "def h(job, ctx):\n    yield Select(job.id)\n    while True:\n        pass\n",
}

STRATEGY_MODULE = """from tracker.ops import ReadClock, Select, Sleep, Update
from tracker.strategies import Strategy

{handler}

S = Strategy("bad", "a strategy with a mistake", on_active=h)
"""


def strategy_cases() -> list[tuple[str, list[str], dict[str, str | bytes]]]:
    """Strategy code with a mistake. These end each run as an error naming the handler, its file and
    line; a command that judges exits 2 (the strategy is broken), never 1, never a hang."""
    cases = []
    for name, handler in BAD_HANDLERS.items():
        files: dict[str, str | bytes] = {"badstrat.py": STRATEGY_MODULE.format(handler=handler)}
        cases.append((f"strategy/{name}/run", ["run", "process-success", "--strategy", "badstrat:S"], files))
        if name == "busy-loop":  # the wall-clock limit stops it; the default (minutes) is too long for a test
            cases[-1] = (cases[-1][0], [*cases[-1][1], "--max-run-seconds", "2"], files)
        if name in ("unknown-column", "select-loop", "busy-loop", "not-a-generator"):
            cases.append((f"strategy/{name}/sweep", ["sweep", "process-success", "--strategies", "badstrat:S", "--runs", "2",
                                                     "--workers", "1", "--max-run-seconds", "2"], files))
        if name in ("raises", "select-loop", "unknown-column"):
            cases.append((f"strategy/{name}/explore", ["explore", "process-success", "--strategy", "badstrat:S",
                                                       "--method", "random", "--budget", "3"], files))
    return cases


def dsn_cases() -> list[tuple[str, list[str], dict[str, str | bytes]]]:
    run = ["run", "process-success", "--backend", "postgres", "--dsn"]
    return [
        ("dsn/not-a-url", [*run, "this is not a dsn"], {}),
        ("dsn/unknown-scheme", [*run, "mysql://root@127.0.0.1/test"], {}),
        ("dsn/unreachable-port", [*run, "postgresql://postgres:secret@127.0.0.1:1/test?connect_timeout=2"], {}),
        ("dsn/unknown-database", [*run, "postgresql://postgres@127.0.0.1:5432/no_such_database_xyz"], {}),
        ("dsn/bad-connect-timeout", [*run, "postgresql://postgres@127.0.0.1:5432/test?connect_timeout=abc"], {}),
        ("dsn/unknown-option", [*run, "postgresql://postgres@127.0.0.1:5432/test?frobnicate=1"], {}),
        ("dsn/bad-port", [*run, "postgresql://postgres@127.0.0.1:notaport/test"], {}),
        ("dsn/schema-bad-name", ["run", "process-success", "--backend", "postgres", "--dsn",
                                 "postgresql://postgres@127.0.0.1:5432/test", "--schema", "bad name; drop"], {}),
        ("dsn/mistyped-url-with-password", [*run, "postgresql:/postgres:secret@127.0.0.1:5432/test"], {}),
        ("dsn/schema-reserved-prefix", ["run", "process-success", "--backend", "postgres", "--dsn",
                                        "postgresql://postgres@127.0.0.1:5432/test", "--schema", "pg_x"], {}),
        ("dsn/sweep-unreachable", ["sweep", "process-success", "--runs", "1", "--backend", "both", "--dsn",
                                   "postgresql://postgres:secret@127.0.0.1:1/test?connect_timeout=2"], {}),
    ]
