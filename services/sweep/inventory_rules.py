"""Waste in a region's cloud inventory, joined with what the collectors observe (pure).

Instances (running only), one finding each, the most specific reason first:
1. ``orphaned_scheduler_node``: tagged as a member of an AWS Batch compute environment, ECS cluster
   or EKS node group that no longer exists, or that exists and no longer lists it (after a grace
   period for registration);
2. ``idle_instance``: its collector (joined by instance id) reports no execution (see idle.py);
3. ``unmonitored_instance``: no collector reports it (never, or its heartbeat stopped).
Storage and network: ``unattached_volume`` (EBS status available), ``unassociated_eip`` (no
association), ``orphaned_snapshot`` (owned by this account, its volume gone, not backing one of the
account's AMIs, older than a threshold), ``idle_load_balancer`` (no healthy target in any target group).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from execsight import pricing
from execsight.sweep.finding_records import (
    EBS_SNAPSHOT,
    EBS_VOLUME,
    EC2_INSTANCE,
    ELASTIC_IP,
    IDLE_INSTANCE,
    IDLE_LOAD_BALANCER,
    LOAD_BALANCER,
    ORPHANED_SCHEDULER_NODE,
    ORPHANED_SNAPSHOT,
    UNASSOCIATED_EIP,
    UNATTACHED_VOLUME,
    UNMONITORED_INSTANCE,
    Finding,
)
from execsight.sweep.idle import NS, HostVerdict, duration
from execsight.sweep.inventory import (
    BATCH_CE_TAG,
    ECS_CLUSTER_TAGS,
    EKS_CLUSTER_TAG,
    EKS_NODEGROUP_TAG,
    EcsCluster,
    Instance,
    RegionInventory,
)

HOURS = pricing.HOURS_PER_MONTH


@dataclass(frozen=True)
class RuleConfig:
    snapshot_min_age_s: float = 30 * 86400.0
    # time a new instance/load balancer gets to register with its scheduler/targets or start its collector
    grace_s: float = 900.0
    onprem_hourly_usd: float = 0.10


@dataclass(frozen=True)
class Orphan:
    reason: str
    detail: str


def _arn_name(value: str) -> str:
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def scheduler_orphan(inst: Instance, inv: RegionInventory, age_ns: int, grace_ns: int) -> Orphan | None:
    """Why ``inst`` is an orphaned scheduler node, or None when it is not (or not tagged as one)."""
    tags = inst.tags
    clusters_by_name: dict[str, EcsCluster] = {}
    for c in inv.ecs_clusters:
        clusters_by_name[c.name] = c
        clusters_by_name[c.arn] = c
    ce_ref = tags.get(BATCH_CE_TAG)
    if ce_ref:
        ce = next((c for c in inv.compute_environments if ce_ref in (c.name, c.arn)), None)
        if ce is None or ce.status == "DELETED":
            return Orphan("batch_compute_environment_missing", f"Batch compute environment {ce_ref} no longer exists")
        cluster = clusters_by_name.get(ce.ecs_cluster_arn or "")
        if age_ns >= grace_ns and (cluster is None or inst.instance_id not in cluster.ec2_instance_ids):
            return Orphan("batch_compute_environment_not_listing",
                          f"Batch compute environment {ce.name} (ECS cluster {_arn_name(ce.ecs_cluster_arn or '?')}) "
                          "does not list this instance")
    ecs_ref = next((tags[k] for k in ECS_CLUSTER_TAGS if tags.get(k)), None)
    if ecs_ref:
        cluster = clusters_by_name.get(ecs_ref) or clusters_by_name.get(_arn_name(ecs_ref))
        if cluster is None or cluster.status == "INACTIVE":
            return Orphan("ecs_cluster_missing", f"ECS cluster {ecs_ref} no longer exists")
        if age_ns >= grace_ns and inst.instance_id not in cluster.ec2_instance_ids:
            return Orphan("ecs_cluster_not_listing", f"ECS cluster {cluster.name} does not list this instance")
    eks_cluster, eks_ng = tags.get(EKS_CLUSTER_TAG), tags.get(EKS_NODEGROUP_TAG)
    if eks_ng:
        ng = next((n for n in inv.eks_nodegroups if n.name == eks_ng and (eks_cluster in (None, n.cluster))), None)
        if ng is None:
            where = f"EKS cluster {eks_cluster}" if eks_cluster else "any EKS cluster"
            gone = "" if eks_cluster is None or eks_cluster in inv.eks_clusters else f" (cluster {eks_cluster} is gone)"
            return Orphan("eks_nodegroup_missing", f"EKS node group {eks_ng} no longer exists in {where}{gone}")
        if age_ns >= grace_ns and ng.asg_instance_ids is not None and inst.instance_id not in ng.asg_instance_ids:
            return Orphan("eks_nodegroup_not_listing",
                          f"EKS node group {ng.cluster}/{ng.name} (groups {', '.join(ng.asg_names)}) "
                          "does not list this instance")
    elif eks_cluster and eks_cluster not in inv.eks_clusters:
        return Orphan("eks_cluster_missing", f"EKS cluster {eks_cluster} no longer exists")
    return None


def instance_findings(
    inv: RegionInventory, hosts_by_instance: Mapping[str, HostVerdict], now_ns: int, cfg: RuleConfig,
    table: pricing.PriceTable,
) -> list[Finding]:
    out: list[Finding] = []
    grace_ns = int(cfg.grace_s * NS)
    for inst in inv.instances:
        if inst.state != "running":
            continue
        hourly = pricing.host_rate(inst.instance_type, inst.region, cfg.onprem_hourly_usd, table).hourly_usd
        monthly = hourly * HOURS
        age_ns = now_ns - inst.launch_ns
        verdict = hosts_by_instance.get(inst.instance_id)
        base_ev: tuple[tuple[str, float, str], ...] = (("hourly_rate", hourly, "usd"), ("age_s", age_ns / NS, "s"))

        def finding(kind: str, reason: str, since: int, summary: str, ev: tuple[tuple[str, float, str], ...],
                    accrued: float | None, advice: str, inst: Instance = inst, v: HostVerdict | None = verdict,
                    monthly: float = monthly) -> Finding:
            return Finding(kind=kind, resource_type=EC2_INSTANCE, resource_id=inst.instance_id, region=inst.region,
                           reason=reason, summary=summary, since_ns=since, evidence=ev,
                           host_id=v.host_id if v else None, last_run_id=v.last_run_id if v else None,
                           monthly_waste_usd=monthly, accrued_waste_usd=accrued, recommendation=advice,
                           tags=dict(inst.tags))

        orphan = scheduler_orphan(inst, inv, age_ns, grace_ns)
        if orphan is not None:
            out.append(finding(
                ORPHANED_SCHEDULER_NODE, orphan.reason, inst.launch_ns,
                f"{inst.instance_type} {inst.instance_id} is an orphaned scheduler node: {orphan.detail}",
                (*base_ev, ("collector_reporting", float(bool(verdict and verdict.state != "silent")), "bool")),
                None,  # since is the launch time: when the scheduler let go of it is not observable here
                "Terminate the instance (its scheduler no longer manages it).",
            ))
            continue
        if verdict is not None and verdict.state == "idle" and verdict.since_ns is not None:
            idle_ns = now_ns - verdict.since_ns
            out.append(finding(
                IDLE_INSTANCE, verdict.kind or "idle_host", verdict.since_ns,
                (f"{inst.instance_type} {inst.instance_id} (host {verdict.host_id}) has run no pipeline "
                 f"work for {duration(idle_ns)}; last run {verdict.last_run_id or 'none seen'}"),
                (*base_ev, ("idle_s", idle_ns / NS, "s"), ("short_spikes", float(verdict.spikes), "count")),
                hourly * idle_ns / (3600 * NS),
                "Stop or terminate the instance, or let its scheduler scale it in.",
            ))
            continue
        if (verdict is None or verdict.state == "silent") and age_ns >= grace_ns:
            since = verdict.last_heartbeat_ns if verdict and verdict.last_heartbeat_ns else inst.launch_ns
            reason = "collector_silent" if verdict is not None else "no_collector"
            what = ("its collector stopped reporting" if verdict is not None
                    else "no collector has ever reported it")
            out.append(finding(
                UNMONITORED_INSTANCE, reason, since,
                f"{inst.instance_type} {inst.instance_id} is running but {what}",
                base_ev, hourly * max(0, now_ns - since) / (3600 * NS),
                "Install/restart the execsight collector, or terminate the instance if unused.",
            ))
    return out


def storage_findings(inv: RegionInventory, now_ns: int, cfg: RuleConfig, table: pricing.PriceTable) -> list[Finding]:
    out: list[Finding] = []
    for v in inv.volumes:
        if v.state != "available":
            continue
        monthly = pricing.ebs_monthly_cost(v.volume_type, v.size_gb, v.region, table)
        out.append(Finding(
            kind=UNATTACHED_VOLUME, resource_type=EBS_VOLUME, resource_id=v.volume_id, region=v.region,
            reason="volume_available", since_ns=v.create_ns, monthly_waste_usd=monthly,
            summary=f"EBS volume {v.volume_id} ({v.size_gb} GiB {v.volume_type}) is attached to nothing",
            evidence=(("size", float(v.size_gb), "GiB"), ("age_s", (now_ns - v.create_ns) / NS, "s")),
            recommendation="Snapshot it if needed, then delete the volume.",
        ))
    eip_hourly = pricing.elastic_ip_hourly_price(inv.region, table)
    for a in inv.addresses:
        if a.association_id:
            continue
        out.append(Finding(
            kind=UNASSOCIATED_EIP, resource_type=ELASTIC_IP, resource_id=a.allocation_id, region=a.region,
            reason="not_associated", monthly_waste_usd=None if eip_hourly is None else eip_hourly * HOURS,
            summary=f"Elastic IP {a.public_ip} ({a.allocation_id}) is not associated with anything",
            evidence=(("hourly_rate", eip_hourly or 0.0, "usd"),),
            recommendation="Release the address.",
        ))
    existing = {v.volume_id for v in inv.volumes}
    snap_price = pricing.snapshot_gb_month_price(inv.region, table)
    min_age = int(cfg.snapshot_min_age_s * NS)
    for s in inv.snapshots:
        if s.owner_id != inv.account_id or s.snapshot_id in inv.ami_snapshot_ids:
            continue
        if s.volume_id in existing or now_ns - s.start_ns < min_age:
            continue
        out.append(Finding(
            kind=ORPHANED_SNAPSHOT, resource_type=EBS_SNAPSHOT, resource_id=s.snapshot_id, region=s.region,
            reason="source_volume_gone", since_ns=s.start_ns,
            monthly_waste_usd=None if snap_price is None else snap_price * s.size_gb,
            summary=(f"snapshot {s.snapshot_id} ({s.size_gb} GiB, {duration(now_ns - s.start_ns)} old) of volume "
                     f"{s.volume_id or '?'} which no longer exists"),
            evidence=(("size", float(s.size_gb), "GiB"), ("age_s", (now_ns - s.start_ns) / NS, "s")),
            recommendation="Delete the snapshot unless it is a deliberate backup (then tag and archive it).",
        ))
    lb_hourly = pricing.load_balancer_hourly_price(inv.region, table)
    for lb in inv.load_balancers:
        healthy = sum(tg.healthy for tg in lb.target_groups)
        if healthy > 0 or now_ns - lb.created_ns < cfg.grace_s * NS:
            continue
        total = sum(tg.total for tg in lb.target_groups)
        why = "has no target groups" if not lb.target_groups else f"has {total} target(s), none healthy"
        out.append(Finding(
            kind=IDLE_LOAD_BALANCER, resource_type=LOAD_BALANCER, resource_id=lb.arn, region=lb.region,
            reason="no_target_groups" if not lb.target_groups else "no_healthy_targets", since_ns=None,
            monthly_waste_usd=None if lb_hourly is None else lb_hourly * HOURS,
            summary=f"{lb.lb_type} load balancer {lb.name} {why}",
            evidence=(("target_groups", float(len(lb.target_groups)), "count"), ("targets", float(total), "count"),
                      ("healthy_targets", 0.0, "count")),
            recommendation="Delete the load balancer if nothing should serve behind it.",
        ))
    return out


def region_findings(
    inv: RegionInventory, verdicts: Mapping[str, HostVerdict], now_ns: int, cfg: RuleConfig,
    table: pricing.PriceTable,
) -> list[Finding]:
    """All findings for one scanned region; ``verdicts`` are the collector hosts' (keyed by host id)."""
    by_instance = {v.instance_id: v for v in verdicts.values() if v.instance_id}
    return instance_findings(inv, by_instance, now_ns, cfg, table) + storage_findings(inv, now_ns, cfg, table)
