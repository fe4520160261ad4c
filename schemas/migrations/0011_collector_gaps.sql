-- Collector restarts (issue 19.4). A restarted collector reports the window it was not observing
-- (CollectorGap) and, for each process it had reported live that is gone, an unobserved exit: the
-- process row is closed at the last time it was known alive, exit code and signal NULL, flagged.
-- The same on both storage flavours: collector_gaps is one small row per restart.
ALTER TABLE processes ADD COLUMN exit_unobserved boolean NOT NULL DEFAULT false;

CREATE TABLE collector_gaps (
    host_id             text NOT NULL,
    gap_from            timestamptz NOT NULL,   -- the collector's last live-set save (a clean stop, or before a crash)
    gap_to              timestamptz NOT NULL,   -- it observed again
    reason              text NOT NULL,          -- crash, stop, reboot
    unobserved_exits    bigint NOT NULL DEFAULT 0,
    carried_over        bigint NOT NULL DEFAULT 0,
    live_set_truncated  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (host_id, gap_from)
);
CREATE INDEX collector_gaps_to ON collector_gaps (gap_to DESC);

-- Runs that overlap a gap of their host: whatever the run did in that window is not fully known.
CREATE VIEW run_collector_gaps AS
SELECT r.run_id,
       r.host_id,
       g.gap_from,
       g.gap_to,
       g.reason,
       g.unobserved_exits,
       (SELECT count(*) FROM processes p
         WHERE p.run_id = r.run_id AND p.host_id = r.host_id AND p.exit_unobserved
           AND p.start_time >= r.start_time) AS run_unobserved_exits
FROM runs r
JOIN collector_gaps g
  ON g.host_id = r.host_id
 AND g.gap_to >= r.start_time
 AND (r.end_time IS NULL OR g.gap_from <= r.end_time);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'execsight_ui') THEN
        EXECUTE 'GRANT SELECT ON collector_gaps, run_collector_gaps TO execsight_ui';
    END IF;
END $$;
