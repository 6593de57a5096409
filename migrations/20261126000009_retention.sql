-- Retention (issue 6): the scheduler's leader drops whole months of the partitioned logs once
-- they are past the retention period, and prunes finished executions in batches.

-- Drops `parent`'s monthly partitions that end at or before `cutoff`, and deletes the rows of
-- its DEFAULT partition (rows outside prepared months) older than `cutoff` by `key_column`.
-- Returns how many partitions were dropped.
CREATE FUNCTION kai_drop_expired_partitions(parent TEXT, key_column TEXT, cutoff TIMESTAMPTZ)
RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    part RECORD;
    month_start DATE;
    dropped INTEGER := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = parent AND c.relname ~ ('^' || parent || '_[0-9]{4}_[0-9]{2}$')
    LOOP
        month_start := to_date(right(part.relname, 7), 'YYYY_MM');
        IF (month_start + interval '1 month') AT TIME ZONE 'UTC' <= cutoff THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    EXECUTE format('DELETE FROM %I WHERE %I < $1', parent || '_default', key_column) USING cutoff;
    RETURN dropped;
END;
$$;

-- Pruning finished executions by age.
CREATE INDEX idx_executions_started ON workflow_executions (started_at);
