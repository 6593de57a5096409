-- Scheduled jobs (issue 6): what a timer needs besides the seed's columns, change
-- notifications for the scheduler's leader, and job_executions keyed by the tick it ran for.

ALTER TABLE scheduled_jobs
    -- The whole timer configuration as given (node settings merged with API changes); the
    -- typed columns beside it are derived from it for queries and readers.
    ADD COLUMN timer_config JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN run_at TIMESTAMPTZ,
    -- Interval and delay timers count from here: creation, or the last change of their timing.
    ADD COLUMN anchor_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN trigger_data JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN misfire_policy VARCHAR(10) NOT NULL DEFAULT 'fire_once',
    ADD COLUMN overlap_policy VARCHAR(10) NOT NULL DEFAULT 'allow',
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD CONSTRAINT scheduled_jobs_misfire_check
        CHECK (misfire_policy IN ('fire_once', 'skip', 'fire_all')),
    ADD CONSTRAINT scheduled_jobs_overlap_check CHECK (overlap_policy IN ('allow', 'skip')),
    ADD CONSTRAINT scheduled_jobs_max_executions_check CHECK (max_executions >= 0);
CREATE INDEX idx_scheduled_jobs_workflow ON scheduled_jobs (workflow_id);

-- The leader keeps due times in memory and learns of every change at once through this
-- channel: inserts, updates, deletes, including deletes cascaded from a deleted workflow.
-- Every change made through the API moves updated_at; the leader's own bookkeeping after a tick
-- (next_run_at, counters) does not, so it is not told about its own writes.
CREATE FUNCTION kai_notify_scheduled_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kai_scheduled_jobs',
        CASE WHEN TG_OP = 'DELETE' THEN OLD.id::text ELSE NEW.id::text END);
    RETURN NULL;
END;
$$;
CREATE TRIGGER scheduled_jobs_notify
    AFTER INSERT OR DELETE ON scheduled_jobs
    FOR EACH ROW EXECUTE FUNCTION kai_notify_scheduled_job();
CREATE TRIGGER scheduled_jobs_notify_change
    AFTER UPDATE ON scheduled_jobs
    FOR EACH ROW WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION kai_notify_scheduled_job();

-- Nothing wrote job_executions before this version. It is now partitioned by the tick it ran
-- for, so that (job_id, scheduled_for) can be unique: the last guard against a tick running
-- twice when two leaders overlap for a moment.
DROP TABLE job_executions;
CREATE TABLE job_executions (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    job_id UUID NOT NULL,
    -- The workflow execution this tick started (absent for a tick skipped by overlap_policy).
    execution_id UUID,
    scheduled_for TIMESTAMPTZ NOT NULL,
    -- timer: fired by the scheduler; manual: POST .../trigger.
    source VARCHAR(10) NOT NULL DEFAULT 'timer',
    -- When the tick was emitted to the queue (the leader's clock_timestamp() just before it
    -- publishes), so its lateness is started_at - scheduled_for.
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- queued: on the jobs stream (the run's own state is in workflow_executions);
    -- skipped: not run because the previous run was still going.
    status VARCHAR(20) NOT NULL DEFAULT 'queued',
    PRIMARY KEY (id, scheduled_for),
    CONSTRAINT job_executions_tick_key UNIQUE (job_id, scheduled_for),
    CONSTRAINT job_executions_status_check CHECK (status IN ('queued', 'skipped')),
    CONSTRAINT job_executions_source_check CHECK (source IN ('timer', 'manual'))
) PARTITION BY RANGE (scheduled_for);
CREATE INDEX idx_job_exec_execution ON job_executions (execution_id);
CREATE TABLE job_executions_default PARTITION OF job_executions DEFAULT;
SELECT kai_ensure_monthly_partitions('job_executions', 3);
