-- Custom node types: registered by a user, backed by an HTTP endpoint they run. Built-in rows
-- (node_class 'builtin') have no owner and no endpoint; custom rows (node_class 'http') have
-- both, and are visible to and usable by their owner only.
ALTER TABLE node_registry
    ADD COLUMN owner_id UUID REFERENCES users(id) ON DELETE CASCADE,
    ADD COLUMN endpoint JSONB,
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD CONSTRAINT node_registry_custom_check
        CHECK (node_class <> 'http' OR (owner_id IS NOT NULL AND endpoint IS NOT NULL));
CREATE INDEX idx_registry_owner ON node_registry (owner_id) WHERE owner_id IS NOT NULL;
