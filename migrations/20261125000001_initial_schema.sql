-- The KAI-Fusion schema: the seed's tables made valid PostgreSQL, plus the tables it referenced
-- but never defined. Timestamps are timestamptz throughout (the seed's naive TIMESTAMP loses the
-- zone); indexes are separate statements; high-volume logs are partitioned by month.

CREATE EXTENSION IF NOT EXISTS vector;

-- ---------------------------------------------------------------------------------------------
-- Accounts
-- ---------------------------------------------------------------------------------------------
CREATE TABLE users (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email VARCHAR(320) NOT NULL,
    password_hash TEXT NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Emails compare case-insensitively: Alice@x and alice@x are one account.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE api_keys (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    -- Only a hash of the key is kept; the prefix lets a user recognise a key in a list.
    key_prefix VARCHAR(16) NOT NULL,
    key_hash TEXT NOT NULL,
    last_used_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
);
CREATE INDEX idx_api_keys_user ON api_keys (user_id);

CREATE TABLE user_credentials (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    service_type VARCHAR(50) NOT NULL,
    -- AEAD ciphertext of the JSON secret (nonce || ciphertext), never the plain secret.
    encrypted_secret BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT user_credentials_user_name_key UNIQUE (user_id, name)
);

-- ---------------------------------------------------------------------------------------------
-- Workflows and their immutable versions
-- ---------------------------------------------------------------------------------------------
CREATE TABLE workflows (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- The latest saved version; the graph itself lives in workflow_versions.
    current_version INTEGER NOT NULL DEFAULT 1,
    is_active BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_workflows_user ON workflows (user_id, created_at DESC);

CREATE TABLE workflow_versions (
    workflow_id UUID NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    flow_data JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, version)
);

-- A version is written once and never changed: executions replay exactly what they were
-- enqueued with.
CREATE FUNCTION kai_reject_version_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'workflow_versions rows are immutable';
END;
$$;
CREATE TRIGGER workflow_versions_immutable BEFORE UPDATE ON workflow_versions
    FOR EACH ROW EXECUTE FUNCTION kai_reject_version_update();

CREATE TABLE workflow_executions (
    -- Chosen by whoever enqueues the job and carried in the job message, so a redelivered
    -- message finds its execution instead of creating a second one.
    id UUID PRIMARY KEY,
    workflow_id UUID NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    workflow_version INTEGER NOT NULL,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    trigger_type VARCHAR(20) NOT NULL, -- webhook, timer, manual
    trigger_id VARCHAR(255),           -- webhook id or schedule id
    status VARCHAR(20) NOT NULL,       -- running, completed, failed
    inputs JSONB NOT NULL DEFAULT '{}',
    outputs JSONB,
    error TEXT,
    error_type VARCHAR(50),
    enqueued_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    duration_ms INTEGER,
    attempt INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT workflow_executions_status_check CHECK (status IN ('running', 'completed', 'failed'))
);
CREATE INDEX idx_executions_workflow ON workflow_executions (workflow_id, started_at DESC);
CREATE INDEX idx_executions_user ON workflow_executions (user_id, started_at DESC);
CREATE INDEX idx_executions_status ON workflow_executions (workflow_id, status);

CREATE TABLE node_executions (
    execution_id UUID NOT NULL REFERENCES workflow_executions(id) ON DELETE CASCADE,
    node_id VARCHAR(255) NOT NULL,
    node_type VARCHAR(100) NOT NULL,
    status VARCHAR(20) NOT NULL, -- completed, failed, skipped
    inputs JSONB,
    outputs JSONB,
    error TEXT,
    started_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    duration_ms INTEGER,
    PRIMARY KEY (execution_id, node_id)
);

-- ---------------------------------------------------------------------------------------------
-- Node metadata (seed section 1)
-- ---------------------------------------------------------------------------------------------
CREATE TABLE node_configurations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id UUID NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    node_id VARCHAR(255) NOT NULL,
    node_type VARCHAR(100) NOT NULL,
    configuration JSONB NOT NULL,
    position JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT node_configurations_workflow_node_key UNIQUE (workflow_id, node_id)
);
CREATE INDEX idx_node_config_type ON node_configurations (node_type);
CREATE INDEX idx_node_config_node_id ON node_configurations (node_id);

CREATE TABLE node_registry (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    node_type VARCHAR(100) NOT NULL,
    node_class VARCHAR(255) NOT NULL,
    category VARCHAR(50) NOT NULL,
    version VARCHAR(20) NOT NULL DEFAULT '1.0.0',
    schema_definition JSONB NOT NULL,
    ui_schema JSONB NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT node_registry_node_type_key UNIQUE (node_type)
);
CREATE INDEX idx_registry_category ON node_registry (category);
CREATE INDEX idx_registry_active ON node_registry (is_active);

-- ---------------------------------------------------------------------------------------------
-- Webhooks (seed section 2)
-- ---------------------------------------------------------------------------------------------
CREATE TABLE webhook_endpoints (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_id VARCHAR(255) NOT NULL,
    workflow_id UUID NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    node_id VARCHAR(255) NOT NULL,
    endpoint_path VARCHAR(500) NOT NULL,
    secret_token VARCHAR(255) NOT NULL,
    config JSONB NOT NULL DEFAULT '{
        "authentication_required": true,
        "allowed_event_types": [],
        "max_payload_size": 1024,
        "rate_limit_per_minute": 60,
        "webhook_timeout": 30,
        "enable_cors": true,
        "node_behavior": "auto"
    }',
    is_active BOOLEAN NOT NULL DEFAULT true,
    node_behavior VARCHAR(20) NOT NULL DEFAULT 'auto',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_triggered TIMESTAMPTZ,
    trigger_count BIGINT NOT NULL DEFAULT 0,
    avg_response_time_ms INTEGER NOT NULL DEFAULT 0,
    error_count BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT webhook_endpoints_webhook_id_key UNIQUE (webhook_id),
    -- One endpoint per webhook node: saving the workflow again keeps the node's webhook.
    CONSTRAINT webhook_endpoints_workflow_node_key UNIQUE (workflow_id, node_id),
    CONSTRAINT webhook_endpoints_node_behavior_check
        CHECK (node_behavior IN ('auto', 'start_only', 'trigger_only'))
);
CREATE INDEX idx_webhook_active ON webhook_endpoints (is_active);
CREATE INDEX idx_webhook_behavior ON webhook_endpoints (node_behavior);

-- The seed called this table both webhook_events and webhook_logs; it is webhook_events.
-- Partitioned by month; the primary key must include the partition key. There is deliberately
-- no foreign key to webhook_endpoints: a log row outlives the endpoint it records, and a
-- cascading delete through months of partitions would stall the API.
CREATE TABLE webhook_events (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    webhook_id VARCHAR(255) NOT NULL,
    execution_id UUID,
    event_type VARCHAR(100) NOT NULL DEFAULT 'webhook.received',
    payload JSONB NOT NULL,
    correlation_id UUID NOT NULL DEFAULT gen_random_uuid(),
    source_ip INET,
    user_agent TEXT,
    request_method VARCHAR(10) NOT NULL DEFAULT 'POST',
    request_headers JSONB,
    request_ip INET,
    response_status INTEGER,
    response_body JSONB,
    execution_time_ms INTEGER,
    error_message TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_webhook_events_webhook ON webhook_events (webhook_id, created_at DESC);
CREATE INDEX idx_webhook_events_created ON webhook_events (created_at);
CREATE INDEX idx_webhook_events_status ON webhook_events (response_status);

-- ---------------------------------------------------------------------------------------------
-- Timers (seed section 3)
-- ---------------------------------------------------------------------------------------------
CREATE TABLE scheduled_jobs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id UUID NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    node_id VARCHAR(255) NOT NULL,
    job_name VARCHAR(255) NOT NULL,
    timer_type VARCHAR(20) NOT NULL,
    cron_expression VARCHAR(100),
    interval_seconds INTEGER,
    delay_seconds INTEGER,
    timezone VARCHAR(64) NOT NULL DEFAULT 'UTC',
    max_executions INTEGER NOT NULL DEFAULT 0,
    current_executions INTEGER NOT NULL DEFAULT 0,
    is_enabled BOOLEAN NOT NULL DEFAULT true,
    next_run_at TIMESTAMPTZ,
    last_run_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT scheduled_jobs_workflow_node_key UNIQUE (workflow_id, node_id),
    CONSTRAINT scheduled_jobs_timer_type_check CHECK (timer_type IN ('cron', 'interval', 'once')),
    CONSTRAINT scheduled_jobs_interval_check CHECK (interval_seconds IS NULL OR interval_seconds >= 1)
);
CREATE INDEX idx_scheduled_jobs_next_run ON scheduled_jobs (next_run_at) WHERE is_enabled;
CREATE INDEX idx_scheduled_jobs_type ON scheduled_jobs (timer_type);

-- Partitioned by month, so no foreign key to scheduled_jobs (see webhook_events).
CREATE TABLE job_executions (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    job_id UUID NOT NULL,
    execution_id UUID,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ,
    status VARCHAR(20) NOT NULL DEFAULT 'running',
    result JSONB,
    error_message TEXT,
    execution_time_ms INTEGER,
    PRIMARY KEY (id, started_at)
) PARTITION BY RANGE (started_at);
CREATE INDEX idx_job_exec_job ON job_executions (job_id, started_at DESC);
CREATE INDEX idx_job_exec_status ON job_executions (status);

-- ---------------------------------------------------------------------------------------------
-- Vector storage (seed section 4). Documents live in one table per collection, named from the
-- collection id and created when the collection is.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE vector_collections (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id UUID REFERENCES workflows(id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    collection_name VARCHAR(255) NOT NULL,
    embedding_dimension INTEGER NOT NULL,
    distance_strategy VARCHAR(20) NOT NULL DEFAULT 'cosine',
    index_type VARCHAR(20) NOT NULL DEFAULT 'hnsw',
    index_params JSONB,
    document_count BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT unique_user_collection UNIQUE (user_id, collection_name),
    CONSTRAINT vector_collections_dimension_check CHECK (embedding_dimension BETWEEN 1 AND 16000),
    CONSTRAINT vector_collections_distance_check
        CHECK (distance_strategy IN ('cosine', 'l2', 'inner_product')),
    CONSTRAINT vector_collections_index_check CHECK (index_type IN ('hnsw', 'ivfflat', 'none'))
);
CREATE INDEX idx_vector_collections_workflow ON vector_collections (workflow_id);

-- ---------------------------------------------------------------------------------------------
-- HTTP request history (seed section 5), partitioned by month.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE http_request_logs (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    workflow_execution_id UUID,
    node_id VARCHAR(255) NOT NULL,
    request_url TEXT NOT NULL,
    request_method VARCHAR(10) NOT NULL,
    request_headers JSONB,
    request_body JSONB,
    response_status INTEGER,
    response_headers JSONB,
    response_body JSONB,
    execution_time_ms INTEGER,
    error_message TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_http_logs_execution ON http_request_logs (workflow_execution_id);
CREATE INDEX idx_http_logs_node ON http_request_logs (node_id);
CREATE INDEX idx_http_logs_created ON http_request_logs (created_at);
CREATE INDEX idx_http_logs_status ON http_request_logs (response_status);

-- ---------------------------------------------------------------------------------------------
-- Document processing (seed section 6)
-- ---------------------------------------------------------------------------------------------
CREATE TABLE document_sources (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id UUID REFERENCES workflows(id) ON DELETE CASCADE,
    source_type VARCHAR(50) NOT NULL,
    source_url TEXT,
    source_config JSONB,
    last_processed TIMESTAMPTZ,
    document_count INTEGER NOT NULL DEFAULT 0,
    processing_status VARCHAR(20) NOT NULL DEFAULT 'pending',
    error_message TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_doc_sources_workflow ON document_sources (workflow_id);
CREATE INDEX idx_doc_sources_type ON document_sources (source_type);
CREATE INDEX idx_doc_sources_status ON document_sources (processing_status);

CREATE TABLE document_processing_jobs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    source_id UUID NOT NULL REFERENCES document_sources(id) ON DELETE CASCADE,
    job_type VARCHAR(50) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    progress_percentage INTEGER NOT NULL DEFAULT 0,
    total_items INTEGER,
    processed_items INTEGER NOT NULL DEFAULT 0,
    failed_items INTEGER NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    error_details JSONB,
    CONSTRAINT document_processing_jobs_progress_check CHECK (progress_percentage BETWEEN 0 AND 100)
);
CREATE INDEX idx_doc_jobs_source ON document_processing_jobs (source_id);
CREATE INDEX idx_doc_jobs_type ON document_processing_jobs (job_type);
CREATE INDEX idx_doc_jobs_status ON document_processing_jobs (status);

-- ---------------------------------------------------------------------------------------------
-- Monthly partitions. A DEFAULT partition catches anything outside the prepared months so an
-- insert never fails; the scheduler's housekeeping calls kai_ensure_monthly_partitions daily to
-- keep months ahead prepared.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION kai_ensure_monthly_partitions(parent TEXT, months_ahead INTEGER)
RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    month_start DATE := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    part_start DATE;
    part_name TEXT;
    created INTEGER := 0;
BEGIN
    FOR i IN 0..months_ahead LOOP
        part_start := (month_start + make_interval(months => i))::date;
        part_name := format('%s_%s', parent, to_char(part_start, 'YYYY_MM'));
        IF to_regclass(part_name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                part_name, parent, part_start, (part_start + interval '1 month')::date);
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;

CREATE TABLE webhook_events_default PARTITION OF webhook_events DEFAULT;
CREATE TABLE job_executions_default PARTITION OF job_executions DEFAULT;
CREATE TABLE http_request_logs_default PARTITION OF http_request_logs DEFAULT;

SELECT kai_ensure_monthly_partitions('webhook_events', 3);
SELECT kai_ensure_monthly_partitions('job_executions', 3);
SELECT kai_ensure_monthly_partitions('http_request_logs', 3);
