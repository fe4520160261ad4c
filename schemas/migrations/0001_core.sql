-- Core tables. Every table has a natural key; writers upsert, so replays change nothing.
-- Time-series tables carry a timestamptz column (partitioning/hypertable dimension)
-- and, where identity needs it, the exact nanosecond value.

CREATE TABLE hosts (
    host_id             text PRIMARY KEY,
    hostname            text,
    cloud_provider      text,
    instance_id         text,
    instance_type       text,
    region              text,
    cpu_count           integer,
    mem_total_bytes     bigint,
    gpu_count           integer NOT NULL DEFAULT 0,
    collector_version   text,
    collector_mode      text,
    first_seen          timestamptz NOT NULL,
    last_seen           timestamptz NOT NULL
);

CREATE TABLE host_samples (
    host_id             text NOT NULL,
    time                timestamptz NOT NULL,
    interval_ns         bigint NOT NULL,
    cpu_count           integer NOT NULL,
    cpu_busy_ratio      double precision NOT NULL,
    cpu_iowait_ratio    double precision NOT NULL DEFAULT 0,
    cpu_steal_ratio     double precision NOT NULL DEFAULT 0,
    load1               double precision NOT NULL DEFAULT 0,
    mem_total_bytes     bigint NOT NULL,
    mem_available_bytes bigint NOT NULL,
    swap_used_bytes     bigint NOT NULL DEFAULT 0,
    psi_cpu_some_avg10  double precision,
    psi_mem_some_avg10  double precision,
    psi_mem_full_avg10  double precision,
    psi_io_some_avg10   double precision,
    psi_io_full_avg10   double precision,
    disk_read_bytes     bigint NOT NULL DEFAULT 0,
    disk_write_bytes    bigint NOT NULL DEFAULT 0,
    net_rx_bytes        bigint NOT NULL DEFAULT 0,
    net_tx_bytes        bigint NOT NULL DEFAULT 0,
    process_count       integer NOT NULL DEFAULT 0,
    gpu_util_pct        double precision,
    gpu_mem_used_bytes  bigint,
    PRIMARY KEY (host_id, time)
);

CREATE TABLE collector_status (
    host_id             text NOT NULL,
    time                timestamptz NOT NULL,
    version             text NOT NULL,
    mode                text NOT NULL,
    probes_attached     text[] NOT NULL DEFAULT '{}',
    probes_missing      text[] NOT NULL DEFAULT '{}',
    events_total        jsonb NOT NULL DEFAULT '{}',
    events_per_s        jsonb NOT NULL DEFAULT '{}',
    lost_events         jsonb NOT NULL DEFAULT '{}',
    lost_events_total   bigint NOT NULL DEFAULT 0,
    spool_bytes         bigint NOT NULL DEFAULT 0,
    spool_records       bigint NOT NULL DEFAULT 0,
    spool_dropped       bigint NOT NULL DEFAULT 0,
    throttled_execs     bigint NOT NULL DEFAULT 0,
    delivery_errors     bigint NOT NULL DEFAULT 0,
    cpu_seconds         double precision NOT NULL DEFAULT 0,
    rss_bytes           bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (host_id, time)
);

CREATE TABLE pipelines (
    pipeline            text PRIMARY KEY,
    first_seen          timestamptz NOT NULL,
    last_seen           timestamptz NOT NULL
);

CREATE TABLE runs (
    run_id              text PRIMARY KEY,
    pipeline            text,
    host_id             text NOT NULL,
    engine              text,
    status              text NOT NULL,          -- RUNNING, SUCCEEDED, FAILED, TIMED_OUT
    root_pid            integer NOT NULL,
    root_start_time_ns  bigint NOT NULL,
    start_time          timestamptz NOT NULL,
    end_time            timestamptz,
    exit_code           integer,
    task_count          integer NOT NULL DEFAULT 0,
    failed_task_count   integer NOT NULL DEFAULT 0,
    process_count       integer NOT NULL DEFAULT 0,
    cpu_ns              bigint NOT NULL DEFAULT 0,
    runq_ns             bigint NOT NULL DEFAULT 0,
    blkio_ns            bigint NOT NULL DEFAULT 0,
    peak_rss_bytes      bigint NOT NULL DEFAULT 0,
    read_bytes          bigint NOT NULL DEFAULT 0,
    write_bytes         bigint NOT NULL DEFAULT 0,
    net_tx_bytes        bigint NOT NULL DEFAULT 0,
    net_rx_bytes        bigint NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_pipeline_start ON runs (pipeline, start_time DESC);
CREATE INDEX runs_start ON runs (start_time DESC);

CREATE TABLE tasks (
    run_id              text NOT NULL,
    task_id             text NOT NULL,
    host_id             text NOT NULL,
    pipeline            text,
    task                text NOT NULL,
    engine              text,
    tool                text,
    tools               text[] NOT NULL DEFAULT '{}',
    status              text NOT NULL,          -- SUCCEEDED, FAILED
    exit_code           integer,
    signal              integer,
    root_pid            integer NOT NULL,
    root_start_time_ns  bigint NOT NULL,
    start_time          timestamptz NOT NULL,
    end_time            timestamptz NOT NULL,
    wall_ns             bigint NOT NULL,
    cpu_ns              bigint NOT NULL,
    runq_ns             bigint NOT NULL DEFAULT 0,
    blkio_ns            bigint NOT NULL DEFAULT 0,
    reclaim_ns          bigint NOT NULL DEFAULT 0,
    peak_rss_bytes      bigint NOT NULL DEFAULT 0,
    read_bytes          bigint NOT NULL DEFAULT 0,
    write_bytes         bigint NOT NULL DEFAULT 0,
    net_tx_bytes        bigint NOT NULL DEFAULT 0,
    net_rx_bytes        bigint NOT NULL DEFAULT 0,
    process_count       integer NOT NULL,
    short_lived_count   integer NOT NULL DEFAULT 0,
    short_lived_wall_ns bigint NOT NULL DEFAULT 0,
    oom_killed          boolean NOT NULL DEFAULT false,
    requested_cpus      double precision,
    requested_memory_bytes bigint,
    instance_type       text,
    cpu_count           integer NOT NULL DEFAULT 0,
    mem_total_bytes     bigint NOT NULL DEFAULT 0,
    container_id        text,
    PRIMARY KEY (run_id, task_id)
);
CREATE INDEX tasks_pipeline_task ON tasks (pipeline, task, start_time DESC);
CREATE INDEX tasks_tool ON tasks (tool, start_time DESC);

CREATE TABLE processes (
    host_id             text NOT NULL,
    pid                 integer NOT NULL,
    start_time_ns       bigint NOT NULL,
    start_time          timestamptz NOT NULL,   -- start_time_ns as timestamptz (partitioning)
    end_time            timestamptz,
    ppid                integer NOT NULL,
    parent_start_time_ns bigint NOT NULL DEFAULT 0,
    comm                text NOT NULL,
    exe                 text NOT NULL DEFAULT '',
    argv                text[] NOT NULL DEFAULT '{}',
    exit_code           integer,
    signal              integer,
    oom_killed          boolean NOT NULL DEFAULT false,
    cpu_ns              bigint NOT NULL DEFAULT 0,
    runq_ns             bigint NOT NULL DEFAULT 0,
    blkio_ns            bigint NOT NULL DEFAULT 0,
    peak_rss_bytes      bigint NOT NULL DEFAULT 0,
    read_bytes          bigint NOT NULL DEFAULT 0,
    write_bytes         bigint NOT NULL DEFAULT 0,
    net_tx_bytes        bigint NOT NULL DEFAULT 0,
    net_rx_bytes        bigint NOT NULL DEFAULT 0,
    short_lived         boolean NOT NULL DEFAULT false,
    pipeline            text,
    run_id              text,
    task_id             text,
    task                text,
    tool                text,
    engine              text,
    container_id        text,
    PRIMARY KEY (host_id, pid, start_time_ns, start_time)
);
CREATE INDEX processes_run ON processes (run_id, task_id);
CREATE INDEX processes_tool ON processes (tool, start_time DESC);

CREATE TABLE process_samples (
    host_id             text NOT NULL,
    pid                 integer NOT NULL,
    start_time_ns       bigint NOT NULL,
    time                timestamptz NOT NULL,
    interval_ns         bigint NOT NULL,
    cpu_ns              bigint NOT NULL,
    runq_ns             bigint NOT NULL DEFAULT 0,
    blocked_ns          bigint NOT NULL DEFAULT 0,
    rss_bytes           bigint NOT NULL,
    threads             integer NOT NULL DEFAULT 1,
    read_bytes          bigint NOT NULL DEFAULT 0,
    write_bytes         bigint NOT NULL DEFAULT 0,
    net_tx_bytes        bigint NOT NULL DEFAULT 0,
    net_rx_bytes        bigint NOT NULL DEFAULT 0,
    gpu_util_pct        real,
    gpu_mem_bytes       bigint,
    run_id              text,
    task_id             text,
    PRIMARY KEY (host_id, pid, start_time_ns, time)
);
CREATE INDEX process_samples_run ON process_samples (run_id, time);

CREATE TABLE tools (
    tool                text PRIMARY KEY,
    first_seen          timestamptz NOT NULL,
    last_seen           timestamptz NOT NULL
);

CREATE TABLE containers (
    container_id        text PRIMARY KEY,
    host_id             text NOT NULL,
    runtime             text,
    name                text,
    image               text,
    pod                 text,
    namespace           text,
    workload            text,
    labels              jsonb NOT NULL DEFAULT '{}',
    first_seen          timestamptz NOT NULL,
    last_seen           timestamptz NOT NULL
);

-- Cost attribution, written by the tune worker (rate x max(cpu share, mem share) x time).
CREATE TABLE task_costs (
    run_id              text NOT NULL,
    task_id             text NOT NULL,
    hourly_usd          double precision NOT NULL,
    cost_usd            double precision NOT NULL,
    waste_usd           double precision NOT NULL DEFAULT 0,
    price_source        text NOT NULL,
    computed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, task_id)
);

CREATE TABLE run_costs (
    run_id              text PRIMARY KEY,
    cost_usd            double precision NOT NULL,
    waste_usd           double precision NOT NULL DEFAULT 0,
    computed_at         timestamptz NOT NULL DEFAULT now()
);

-- Tune and sweep findings; finding_id is a hash of kind + subject (stable across re-detection).
CREATE TABLE findings (
    finding_id          text PRIMARY KEY,
    source              text NOT NULL,          -- tune, sweep
    kind                text NOT NULL,
    status              text NOT NULL,          -- OPEN, RESOLVED
    severity            text NOT NULL,          -- INFO, LOW, MEDIUM, HIGH
    detected_at         timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    resolved_at         timestamptz,
    summary             text NOT NULL,
    recommendation      text,
    evidence            jsonb NOT NULL DEFAULT '[]',
    recommended         jsonb NOT NULL DEFAULT '{}',
    confidence          double precision,
    estimated_savings_usd double precision,
    pipeline            text,
    run_id              text,
    task                text,
    tool                text,
    host_id             text,
    resource_type       text,
    resource_id         text,
    region              text,
    since               timestamptz,
    last_run_id         text,
    monthly_waste_usd   double precision,
    accrued_waste_usd   double precision
);
CREATE INDEX findings_status ON findings (status, updated_at DESC);
CREATE INDEX findings_run ON findings (run_id);
