-- node_configurations mirrors each workflow's current version from now on; fill it for the
-- workflows saved before it did.
INSERT INTO node_configurations (workflow_id, node_id, node_type, configuration, position)
SELECT w.id, n->>'id', n->>'type', COALESCE(n->'data', '{}'::jsonb), n->'position'
FROM workflows w
JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.current_version
CROSS JOIN LATERAL jsonb_array_elements(v.flow_data->'nodes') AS n
ON CONFLICT (workflow_id, node_id) DO NOTHING;
