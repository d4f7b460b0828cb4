-- A table whose CHECKs use CASE, COALESCE, GREATEST and casts.
CREATE TABLE job_status (
    job_id        text        PRIMARY KEY,
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
    CONSTRAINT finished_after_start CHECK (
        CASE status
            WHEN 'completed' THEN completed_at IS NOT NULL
            ELSE true
        END IS NOT FALSE
    ),
    CONSTRAINT outcome_stamped CHECK (
        CASE WHEN status = 'completed' THEN completed_at IS NOT NULL
             WHEN status = 'failed' THEN COALESCE(failed_at, completed_at) IS NOT NULL
             ELSE true END
    ),
    CONSTRAINT attempts_in_range CHECK (COALESCE(attempts, 0)::bigint <= GREATEST(max_attempts, 1)),
    CONSTRAINT cancel_stamped CHECK (cancelled::text = 'false' OR cancelled_at IS NOT NULL)
);
