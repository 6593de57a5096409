-- Workers write execution records with asynchronous commits (visible at once, flushed to disk
-- by the WAL writer soon after) so that a synchronous webhook caller does not wait for a disk
-- flush per batch. Before a worker acknowledges the jobs behind those records it updates this
-- row with a synchronous commit: flushing that commit flushes every earlier one, so a job
-- leaves the queue only once its record is on disk. One barrier covers all the jobs a worker
-- finished meanwhile.
CREATE TABLE kai_durability_barrier (
    id SMALLINT PRIMARY KEY,
    flushed_at TIMESTAMPTZ NOT NULL
);
INSERT INTO kai_durability_barrier (id, flushed_at) VALUES (1, now());
