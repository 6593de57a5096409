-- How many attempts a node took (retries of retryable failures); 0 for a skipped node.
ALTER TABLE node_executions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
