-- Issue 15: a run's payload is stored once, as its execution's inputs. A node execution whose
-- inputs or outputs are the very value the run started with (a trigger's output, what a
-- pass-through node receives and hands on) stores NULL there and says so; so does an execution
-- whose result is its input. Readers take the execution's inputs in their place (the node rows
-- go with their execution: ON DELETE CASCADE).
ALTER TABLE node_executions
    ADD COLUMN inputs_are_trigger BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN outputs_are_trigger BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE workflow_executions
    ADD COLUMN outputs_are_inputs BOOLEAN NOT NULL DEFAULT false;
