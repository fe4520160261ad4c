-- Nextflow retries: a retried task runs again in a new work dir (a new task hash, so a new tasks row)
-- under the same name (`ALIGN (s1)`). task_attempts numbers a run's executions of one Nextflow task in
-- start order: attempt 1, 2, ... of attempts. Cached tasks never start a process, so they are never
-- here (nor in tasks): only executed attempts count. process and tag: the name's two parts
-- (`ALIGN`, `s1`), as services/tune/process_definition splits them.
CREATE VIEW task_attempts AS
SELECT t.run_id,
       t.task_id,
       t.task,
       coalesce(substring(t.task FROM '^(\S.*?)\s+\([^()]*\)$'), t.task) AS process,
       substring(t.task FROM '\(([^()]*)\)$') AS tag,
       t.engine,
       t.status,
       t.exit_code,
       t.start_time,
       row_number() OVER w AS attempt,
       count(*) OVER (PARTITION BY t.run_id, t.task) AS attempts
FROM tasks t
WHERE t.engine = 'nextflow'
WINDOW w AS (PARTITION BY t.run_id, t.task ORDER BY t.start_time, t.task_id);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'execsight_ui') THEN
        EXECUTE 'GRANT SELECT ON task_attempts TO execsight_ui';
    END IF;
END $$;
