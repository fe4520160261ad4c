"""``execsight collector [run] [options]`` and ``execsight collector doctor``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from execsight.collector.cpu_policy import CHOICES, CpuPolicy
from execsight.collector.filters import RulesError, load_rules
from execsight.lifecycle import settings_or_exit

log = logging.getLogger("execsight.collector.main")  # its module path: it also runs as __main__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="execsight collector", description="Per-host execution collector.")
    p.add_argument("command", nargs="?", default="run", choices=["run", "doctor"])
    p.add_argument("--output", nargs="+", metavar=("KIND", "PATH"), default=["kafka"],
                   help="kafka (default) or 'jsonl PATH|-'")
    p.add_argument("--mode", choices=["auto", "ebpf", "fallback"], default="auto")
    p.add_argument("--net-probes", choices=["auto", "sock", "syscalls"], default="auto",
                   help="network bytes from the sock tracepoints (sock), the send/recv syscall "
                        "tracepoints (syscalls: write/read on sockets not counted), or sock where present (auto)")
    p.add_argument("--rules", type=Path, help="rules file (default: EXECSIGHT_COLLECTOR_CONFIG)")
    p.add_argument("--sample-interval", type=float, help="seconds (default: EXECSIGHT_SAMPLE_INTERVAL_S)")
    p.add_argument("--host-interval", type=float, help="seconds (default: EXECSIGHT_HOST_INTERVAL_S)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (EXECSIGHT_COLLECTOR_METRICS_PORT; 0 off)")
    p.add_argument("--spool-dir", type=Path, help="default: $EXECSIGHT_STATE_DIR/spool")
    p.add_argument("--duration", type=float, help="stop after this many seconds (tests, benchmarks)")
    p.add_argument("--no-imds", action="store_true", help="do not probe the EC2 metadata service")
    p.add_argument("--sched", choices=list(CHOICES), default="adaptive",
                   help="CPU policy of the collector's threads: adaptive (default) yields to every workload "
                        "(SCHED_IDLE) while it keeps up and takes its fair share (SCHED_BATCH) when it falls "
                        "behind; batch: always SCHED_BATCH; other: the normal policy")
    p.add_argument("--taskstats-rcvbuf", type=_positive_bytes, metavar="BYTES",
                   help="receive buffer for taskstats exit records (default 64 MiB); what overflows it is "
                        "dropped by the kernel and counted in CollectorStatus.lost_events.taskstats")
    return p


def _positive_bytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of bytes, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of bytes, not {value}")
    return value


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_or_exit("execsight collector")
    if args.command == "doctor":
        from execsight.collector.doctor import report, run_checks

        text, code = report(run_checks())
        print(text)
        return code
    cpu = CpuPolicy(args.sched)
    cpu.start()
    rules_path = args.rules or settings.collector_config
    try:
        rules = load_rules(rules_path)
    except RulesError as exc:
        print(f"execsight collector: {exc}", file=sys.stderr)
        return 2

    from execsight.collector.daemon import Collector, Options, install_signal_handlers
    from execsight.collector.jsonl import JsonlSink
    from execsight.collector.publisher import KafkaSink, Sink
    from execsight.collector.spool import Spool

    kind = args.output[0]
    sink: Sink
    if kind == "jsonl":
        if len(args.output) != 2:
            print("execsight collector: --output jsonl needs PATH or -", file=sys.stderr)
            return 2
        sink = JsonlSink(args.output[1])
    elif kind == "kafka" and len(args.output) == 1:
        from execsight.kafka_security import KafkaCredentialsError, check_broker

        try:  # a broker that refuses the login stops start-up; one not reachable yet is spooled for
            check_broker(settings.kafka_bootstrap, settings.kafka_security, timeout_s=5.0)
        except KafkaCredentialsError as exc:
            print(f"execsight collector: {exc}", file=sys.stderr)
            return 2
        spool = Spool(args.spool_dir or settings.spool_dir, settings.spool_max_bytes)
        sink = KafkaSink(settings.kafka_bootstrap, spool, security=settings.kafka_security)
    else:
        print(f"execsight collector: unknown --output {' '.join(args.output)}", file=sys.stderr)
        return 2
    opts = Options(
        mode=args.mode,
        net_probes=args.net_probes,
        sample_interval_s=args.sample_interval or settings.sample_interval_s,
        host_interval_s=args.host_interval or settings.host_interval_s,
        duration_s=args.duration,
        metrics_port=settings.collector_metrics_port if args.metrics_port is None else args.metrics_port,
        imds=not args.no_imds,
        rules=rules,
        rules_path=rules_path,
    )
    if args.taskstats_rcvbuf is not None:
        opts.taskstats_rcvbuf = args.taskstats_rcvbuf
    collector = Collector(settings, sink, opts, cpu)
    install_signal_handlers(collector)
    try:
        return collector.run()
    except Exception as exc:
        log.exception("collector failed", extra={"error": str(exc)})
        sink.close(5.0)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
