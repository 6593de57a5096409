-- Cursor pagination (issue 16): the listings that grow without bound page by their sort time and
-- id. Each index below orders a listing's rows exactly as the API reads them, so a page after a
-- cursor is an index range read whatever its depth. They replace the indexes on the sort time
-- alone. On a large existing table these builds hold a write lock while they run (index builds on
-- a partitioned table cannot be CONCURRENTLY); apply this migration in a quiet period.

CREATE INDEX idx_executions_workflow_page
    ON workflow_executions (workflow_id, started_at DESC, id DESC);
DROP INDEX idx_executions_workflow;

-- A status filter keeps the same order.
CREATE INDEX idx_executions_workflow_status_page
    ON workflow_executions (workflow_id, status, started_at DESC, id DESC);
DROP INDEX idx_executions_status;

CREATE INDEX idx_webhook_events_webhook_page
    ON webhook_events (webhook_id, created_at DESC, id DESC);
DROP INDEX idx_webhook_events_webhook;

CREATE INDEX idx_dead_letters_user_page ON dead_letters (user_id, created_at DESC, id DESC);
DROP INDEX idx_dead_letters_user;
