-- Issue 18: a run that lasts is recorded as `running` while it goes on (its final write then
-- completes that row), and an owner can cancel a run (`cancelled`).
ALTER TABLE workflow_executions DROP CONSTRAINT workflow_executions_status_check;
ALTER TABLE workflow_executions ADD CONSTRAINT workflow_executions_status_check
    CHECK (status IN ('running', 'completed', 'failed', 'cancelled'));
