-- Vector collections (issue 19): each collection's chunks live in its own table in the
-- kai_vectors schema, named from the collection's id (common/src/vectors/table.rs).
CREATE SCHEMA IF NOT EXISTS kai_vectors;

ALTER TABLE vector_collections
    -- {credential_id?, model}, or NULL: the deployment's embeddings server and model.
    ADD COLUMN embedder JSONB,
    -- deferred: searched exactly until the approximate index is built after the first load.
    ADD COLUMN index_status VARCHAR(12) NOT NULL DEFAULT 'deferred',
    ADD COLUMN index_build_ms BIGINT,
    ADD COLUMN index_built_at TIMESTAMPTZ,
    ADD CONSTRAINT vector_collections_index_status_check
        CHECK (index_status IN ('deferred', 'building', 'ready', 'none'));

-- A deleted workflow must not delete a collection row and leave its table behind: the
-- collection outlives the workflow that created it.
ALTER TABLE vector_collections DROP CONSTRAINT vector_collections_workflow_id_fkey;
ALTER TABLE vector_collections ADD CONSTRAINT vector_collections_workflow_id_fkey
    FOREIGN KEY (workflow_id) REFERENCES workflows(id) ON DELETE SET NULL;

-- Collections waiting for their index are found after a restart.
CREATE INDEX idx_vector_collections_index_status ON vector_collections (index_status)
    WHERE index_status IN ('deferred', 'building');
