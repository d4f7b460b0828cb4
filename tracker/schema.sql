-- The seed's job_status table: the one definition racetrack uses.
-- The in-memory model (tracker/memory.py) enforces exactly these rules; tests/test_schema_parity.py
-- keeps the two in step, and the PostgreSQL backend creates the table from this file.
--
-- now() here is resolved when the table is created. The PostgreSQL backend creates it with its own
-- schema first on the search_path, where a function now() returns the *simulated* database clock
-- (see tracker/postgres.py), so DEFAULT now() and the trigger follow simulated time.

CREATE TABLE job_status (
    job_id        text        NOT NULL,
    status        text        NOT NULL DEFAULT 'pending',
    attempts      integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz,
    failed_at     timestamptz,
    error_message text,
    progress      jsonb,
    cancelled     boolean     NOT NULL DEFAULT false,
    cancelled_at  timestamptz,
    CONSTRAINT job_status_pkey PRIMARY KEY (job_id),
    CONSTRAINT job_status_status_check
        CHECK (status IN ('pending', 'waiting', 'active', 'completed', 'failed', 'delayed')),
    CONSTRAINT job_status_attempts_check
        CHECK (attempts >= 0 AND attempts <= max_attempts),
    CONSTRAINT job_status_timestamps_check
        CHECK ((started_at IS NULL OR started_at >= created_at)
           AND (completed_at IS NULL OR started_at IS NULL OR completed_at >= started_at)
           AND (failed_at IS NULL OR started_at IS NULL OR failed_at >= started_at)),
    CONSTRAINT job_status_completed_check
        CHECK (status <> 'completed' OR completed_at IS NOT NULL),
    CONSTRAINT job_status_failed_check
        CHECK (status <> 'failed' OR failed_at IS NOT NULL),
    CONSTRAINT job_status_cancelled_check
        CHECK (NOT cancelled OR cancelled_at IS NOT NULL)
);

CREATE FUNCTION job_status_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER job_status_updated_at
    BEFORE UPDATE ON job_status
    FOR EACH ROW EXECUTE FUNCTION job_status_set_updated_at();
