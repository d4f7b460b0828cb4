-- A team's table: an owner and a job type that must always be set, a priority, a bigint counter.
CREATE TABLE job_status (
    job_id        text        NOT NULL,
    owner_id      text        NOT NULL DEFAULT 'system',
    job_type      varchar     NOT NULL DEFAULT 'default',
    priority      smallint    NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    status        text        NOT NULL DEFAULT 'pending'
        CHECK (status = ANY (ARRAY['pending'::text, 'waiting'::text, 'active'::text, 'completed'::text, 'failed'::text, 'delayed'::text])),
    attempts      integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  integer     NOT NULL DEFAULT 1,
    bytes_seen    bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz,
    failed_at     timestamptz,
    error_message text,
    progress      jsonb       DEFAULT '{}'::jsonb,
    cancelled     boolean     NOT NULL DEFAULT 'f',
    cancelled_at  timestamptz,
    CONSTRAINT job_status_pkey PRIMARY KEY (job_id),
    CHECK (attempts <= max_attempts),
    CHECK (completed_at IS NULL OR failed_at IS NULL OR status IN ('completed', 'failed'))
);
