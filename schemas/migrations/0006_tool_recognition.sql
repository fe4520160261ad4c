-- Tool recognition (issue 14): how each process's tool was identified and the package that owns it,
-- and a view that names every process, an unidentified one under its executable (same on both flavours:
-- adding nullable columns is allowed on a compressed TimescaleDB hypertable).
ALTER TABLE processes ADD COLUMN tool_package text;
ALTER TABLE processes ADD COLUMN tool_method text;

-- tool_label: the tool, else '<executable> (unidentified executable)'; per-tool views and costs group by it,
-- so no process drops out of them.
CREATE VIEW process_tools AS
SELECT p.*,
       coalesce(p.tool, regexp_replace(coalesce(nullif(p.exe, ''), p.comm), '^.*/', '') || ' (unidentified executable)')
           AS tool_label,
       regexp_replace(coalesce(nullif(p.exe, ''), p.comm), '^.*/', '') AS executable
FROM processes p;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'execsight_ui') THEN
        EXECUTE 'GRANT SELECT ON process_tools TO execsight_ui';
    END IF;
END $$;
