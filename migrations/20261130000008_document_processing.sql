-- Document sources and their processing jobs (issue 19): owned by a user, processed by the
-- worker item by item; an item's chunks and its `done` mark commit together, so a job taken
-- over after a worker died goes on from the first item not done.
ALTER TABLE document_sources
    ADD COLUMN user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    ADD COLUMN name VARCHAR(255),
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX idx_doc_sources_user ON document_sources (user_id, created_at DESC);

ALTER TABLE document_sources DROP CONSTRAINT IF EXISTS document_sources_workflow_id_fkey;
ALTER TABLE document_sources ADD CONSTRAINT document_sources_workflow_id_fkey
    FOREIGN KEY (workflow_id) REFERENCES workflows(id) ON DELETE SET NULL;

ALTER TABLE document_processing_jobs
    ADD COLUMN user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    ADD COLUMN created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN chunks_stored INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN collection_id UUID REFERENCES vector_collections(id) ON DELETE SET NULL;
CREATE INDEX idx_doc_jobs_source_created ON document_processing_jobs (source_id, created_at DESC);

CREATE TABLE document_job_items (
    job_id UUID NOT NULL REFERENCES document_processing_jobs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    -- A URL, or the name of a document given inline.
    item TEXT NOT NULL,
    status VARCHAR(12) NOT NULL DEFAULT 'pending',
    chunks INTEGER NOT NULL DEFAULT 0,
    -- The id its chunks are stored under.
    document_id TEXT,
    error TEXT,
    finished_at TIMESTAMPTZ,
    PRIMARY KEY (job_id, position),
    CONSTRAINT document_job_items_status_check CHECK (status IN ('pending', 'done', 'failed'))
);
