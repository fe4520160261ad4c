-- Process samples by task: tune reads each (run_id, task_id)'s samples (and probes their count and latest
-- time) every batch, and the run report reads them per task. With only (run_id, time), a lookup by task
-- filters every sample of its run, and a join over a batch's keys became a scan and sort of whole chunks.
-- The index is built in the migration's transaction (writes to process_samples wait for it).
CREATE INDEX IF NOT EXISTS process_samples_task ON process_samples (run_id, task_id, time);
