-- A team's own job table, as in its migrations: the status is an enum with a 'cancelled' label,
-- every row names the queue it came from (NOT NULL, with a default), and there is no CHECK on
-- the order of the timestamps: the scenario's row invariant says what it should have said.
CREATE TYPE job_state AS ENUM ('pending', 'waiting', 'delayed', 'active', 'completed', 'failed', 'cancelled');

CREATE TABLE job_status (
    job_id        text        PRIMARY KEY,
    queue_name    text        NOT NULL DEFAULT 'default',
    status        job_state   NOT NULL DEFAULT 'pending',
    attempts      integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz,
    failed_at     timestamptz,
    error_message text,
    progress      jsonb,
    cancelled     boolean     NOT NULL DEFAULT false,
    cancelled_at  timestamptz,
    CHECK (attempts BETWEEN 0 AND max_attempts),
    CHECK (status <> 'completed' OR completed_at IS NOT NULL),
    CHECK (status <> 'failed' OR failed_at IS NOT NULL),
    CHECK (NOT cancelled OR cancelled_at IS NOT NULL)
);

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$;

CREATE TRIGGER job_status_touch BEFORE UPDATE ON job_status
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
