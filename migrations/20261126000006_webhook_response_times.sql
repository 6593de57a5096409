-- Webhook counters for response times and refused calls, folded like the trigger counts.
-- A delta now also carries the call's response time (receipt to the execution's end, for
-- executions) and may be a refused call (triggered = false, failed = true), so error_count
-- counts refused calls as well as failed executions. The average is kept as a total and a
-- count, so folding never compounds rounding.
ALTER TABLE webhook_trigger_deltas
    ADD COLUMN triggered BOOLEAN NOT NULL DEFAULT true,
    ADD COLUMN response_ms INTEGER;

ALTER TABLE webhook_endpoints
    ADD COLUMN response_time_total_ms BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN timed_responses BIGINT NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION kai_fold_webhook_trigger_deltas() RETURNS BIGINT LANGUAGE sql AS $$
    WITH moved AS (
        DELETE FROM webhook_trigger_deltas
        RETURNING webhook_id, triggered_at, failed, triggered, response_ms
    ), totals AS (
        SELECT webhook_id,
               count(*) FILTER (WHERE triggered) AS triggers,
               max(triggered_at) FILTER (WHERE triggered) AS last_triggered,
               count(*) FILTER (WHERE failed) AS errors,
               count(response_ms) AS timed,
               COALESCE(sum(response_ms), 0) AS response_ms
        FROM moved GROUP BY webhook_id
    ), updated AS (
        UPDATE webhook_endpoints e
        SET trigger_count = e.trigger_count + t.triggers,
            last_triggered = GREATEST(e.last_triggered, t.last_triggered),
            error_count = e.error_count + t.errors,
            response_time_total_ms = e.response_time_total_ms + t.response_ms,
            timed_responses = e.timed_responses + t.timed,
            avg_response_time_ms = CASE WHEN e.timed_responses + t.timed > 0
                THEN round((e.response_time_total_ms + t.response_ms)::numeric
                    / (e.timed_responses + t.timed))::int
                ELSE e.avg_response_time_ms END
        FROM totals t
        WHERE e.webhook_id = t.webhook_id
        RETURNING t.triggers
    )
    SELECT COALESCE(sum(triggers), 0)::bigint FROM updated;
$$;
