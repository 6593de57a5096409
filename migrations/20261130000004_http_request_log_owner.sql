-- HTTP request logs (issue 17): whose call it was and from which workflow, so the owner can list
-- them (GET /api/v1/tools/http/logs); the sizes of request and answer. Listed newest first per
-- owner, filtered by workflow, execution or node.
ALTER TABLE http_request_logs
    ADD COLUMN user_id UUID,
    ADD COLUMN workflow_id UUID,
    ADD COLUMN request_bytes BIGINT,
    ADD COLUMN response_bytes BIGINT;
CREATE INDEX idx_http_logs_owner ON http_request_logs (user_id, created_at DESC, id DESC);
CREATE INDEX idx_http_logs_owner_workflow
    ON http_request_logs (user_id, workflow_id, created_at DESC, id DESC);
