"""Read-only AWS inventory (boto3 adapter).

Credentials come from the standard boto3 chain (environment, shared config/credentials files, SSO,
container or instance role). Every client is made by readonly.read_only_client, so only
Describe*/List*/Get* operations can be sent; every listing uses a paginator where the API has one;
throttling is retried with backoff by botocore's retry modes (adaptive by default).
The operations used are exactly the actions of iam-policy.json (a test keeps them in step).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from execsight.sweep.inventory import (
    Address,
    ComputeEnvironment,
    EcsCluster,
    EksNodegroup,
    Instance,
    LoadBalancer,
    RegionInventory,
    Snapshot,
    TargetGroupHealth,
    Volume,
)
from execsight.sweep.readonly import read_only_client, retry_config
from execsight.timestamps import to_ns

log = logging.getLogger(__name__)

IAM_POLICY = Path(__file__).resolve().parent / "iam-policy.json"


class RegionScanError(RuntimeError):
    """A region could not be scanned completely; its findings are left as they were."""


def _ns(value: Any) -> int:
    if isinstance(value, str) and value:
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (to_ns(value) or 0) if isinstance(value, datetime) else 0


def _chunks(items: Sequence[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield list(items[i:i + n])


def pages(client: BaseClient, operation: str, key: str, **params: Any) -> Iterator[Any]:
    """Every item under ``key`` of every page (one call when the API has no paginator)."""
    if client.can_paginate(operation):
        for page in client.get_paginator(operation).paginate(**params):
            yield from page.get(key, [])
    else:
        yield from getattr(client, operation)(**params).get(key, [])


class AwsScanner:
    def __init__(self, session: boto3.session.Session | None = None, max_attempts: int = 10,
                 retry_mode: str = "adaptive") -> None:
        self.session = session or boto3.session.Session()
        self.config: Config = retry_config(max_attempts, retry_mode)
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, service: str, region: str) -> Any:
        """A guarded client (typed Any: the scanner calls several services' operations on it)."""
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = read_only_client(self.session, service, region, self.config)
        return self._clients[key]

    def scan(self, regions: Sequence[str]) -> tuple[list[RegionInventory], dict[str, str]]:
        """Inventories of the regions that scanned completely, and the error of each that did not."""
        done: list[RegionInventory] = []
        failed: dict[str, str] = {}
        for region in regions:
            try:
                done.append(self.scan_region(region))
            except Exception as exc:  # any botocore/network error leaves this region's findings untouched
                log.error("region scan failed", extra={"region": region, "error": f"{type(exc).__name__}: {exc}"})
                failed[region] = f"{type(exc).__name__}: {exc}"
        return done, failed

    def scan_region(self, region: str) -> RegionInventory:
        t0 = time.monotonic()
        account = str(self.client("sts", region).get_caller_identity()["Account"])
        inv = RegionInventory(
            region=region, account_id=account, scanned_ns=time.time_ns(),
            instances=tuple(self.instances(region)),
            volumes=tuple(self.volumes(region)),
            addresses=tuple(self.addresses(region)),
            snapshots=tuple(self.snapshots(region)),
            ami_snapshot_ids=frozenset(self.ami_snapshot_ids(region)),
            compute_environments=tuple(self.compute_environments(region)),
            ecs_clusters=tuple(self.ecs_clusters(region)),
            eks_clusters=frozenset(self.eks_clusters(region)),
            eks_nodegroups=tuple(self.eks_nodegroups(region)),
            load_balancers=tuple(self.load_balancers(region)),
        )
        log.info("region scanned", extra={
            "region": region, "seconds": round(time.monotonic() - t0, 2), "instances": len(inv.instances),
            "volumes": len(inv.volumes), "addresses": len(inv.addresses), "snapshots": len(inv.snapshots),
            "load_balancers": len(inv.load_balancers)})
        return inv

    # --- EC2 ---------------------------------------------------------------------------------------

    def instances(self, region: str) -> Iterator[Instance]:
        ec2 = self.client("ec2", region)
        flt = [{"Name": "instance-state-name", "Values": ["running"]}]
        for reservation in pages(ec2, "describe_instances", "Reservations", Filters=flt):
            for i in reservation.get("Instances", []):
                yield Instance(
                    instance_id=i["InstanceId"], region=region, instance_type=i.get("InstanceType", ""),
                    state=i.get("State", {}).get("Name", ""), launch_ns=_ns(i.get("LaunchTime")),
                    tags={t["Key"]: t.get("Value", "") for t in i.get("Tags", [])},
                )

    def volumes(self, region: str) -> Iterator[Volume]:
        for v in pages(self.client("ec2", region), "describe_volumes", "Volumes"):
            yield Volume(volume_id=v["VolumeId"], region=region, volume_type=v.get("VolumeType", "gp2"),
                         size_gb=int(v.get("Size", 0)), state=v.get("State", ""), create_ns=_ns(v.get("CreateTime")))

    def addresses(self, region: str) -> Iterator[Address]:
        for a in pages(self.client("ec2", region), "describe_addresses", "Addresses"):
            yield Address(allocation_id=a.get("AllocationId") or a.get("PublicIp", ""), public_ip=a.get("PublicIp", ""),
                          region=region, association_id=a.get("AssociationId") or None,
                          instance_id=a.get("InstanceId") or None)

    def snapshots(self, region: str) -> Iterator[Snapshot]:
        for s in pages(self.client("ec2", region), "describe_snapshots", "Snapshots", OwnerIds=["self"]):
            yield Snapshot(snapshot_id=s["SnapshotId"], region=region, volume_id=s.get("VolumeId") or None,
                           size_gb=int(s.get("VolumeSize", 0)), start_ns=_ns(s.get("StartTime")),
                           owner_id=str(s.get("OwnerId", "")), description=s.get("Description", ""))

    def ami_snapshot_ids(self, region: str) -> Iterator[str]:
        for image in pages(self.client("ec2", region), "describe_images", "Images", Owners=["self"]):
            for bdm in image.get("BlockDeviceMappings", []):
                snap = bdm.get("Ebs", {}).get("SnapshotId")
                if snap:
                    yield snap

    # --- schedulers --------------------------------------------------------------------------------

    def compute_environments(self, region: str) -> Iterator[ComputeEnvironment]:
        batch = self.client("batch", region)
        for ce in pages(batch, "describe_compute_environments", "computeEnvironments"):
            yield ComputeEnvironment(name=ce["computeEnvironmentName"], arn=ce["computeEnvironmentArn"],
                                     ecs_cluster_arn=ce.get("ecsClusterArn"), status=ce.get("status", ""))

    def ecs_clusters(self, region: str) -> Iterator[EcsCluster]:
        ecs = self.client("ecs", region)
        arns = list(pages(ecs, "list_clusters", "clusterArns"))
        for chunk in _chunks(arns, 100):
            for c in ecs.describe_clusters(clusters=chunk).get("clusters", []):
                ids: set[str] = set()
                ci_arns = list(pages(ecs, "list_container_instances", "containerInstanceArns", cluster=c["clusterArn"]))
                for ci_chunk in _chunks(ci_arns, 100):
                    resp = ecs.describe_container_instances(cluster=c["clusterArn"], containerInstances=ci_chunk)
                    ids.update(ci["ec2InstanceId"] for ci in resp.get("containerInstances", [])
                               if ci.get("ec2InstanceId"))
                yield EcsCluster(arn=c["clusterArn"], name=c["clusterName"], status=c.get("status", ""),
                                 ec2_instance_ids=frozenset(ids))

    def eks_clusters(self, region: str) -> Iterator[str]:
        yield from pages(self.client("eks", region), "list_clusters", "clusters")

    def eks_nodegroups(self, region: str) -> Iterator[EksNodegroup]:
        eks = self.client("eks", region)
        asg = self.client("autoscaling", region)
        for cluster in pages(eks, "list_clusters", "clusters"):
            for name in pages(eks, "list_nodegroups", "nodegroups", clusterName=cluster):
                ng = eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
                groups = tuple(g["name"] for g in (ng.get("resources") or {}).get("autoScalingGroups", []))
                members: set[str] = set()
                found = 0
                if groups:
                    for group in pages(asg, "describe_auto_scaling_groups", "AutoScalingGroups",
                                       AutoScalingGroupNames=list(groups)):
                        found += 1
                        members.update(i["InstanceId"] for i in group.get("Instances", []))
                yield EksNodegroup(cluster=cluster, name=name, asg_names=groups,
                                   asg_instance_ids=frozenset(members) if found else None)

    # --- load balancers ----------------------------------------------------------------------------

    def load_balancers(self, region: str) -> Iterator[LoadBalancer]:
        elb = self.client("elbv2", region)
        # all target groups once (a target group may serve several load balancers)
        by_lb: dict[str, list[TargetGroupHealth]] = {}
        for tg in pages(elb, "describe_target_groups", "TargetGroups"):
            if not tg.get("LoadBalancerArns"):
                continue
            health = elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"]).get("TargetHealthDescriptions", [])
            healthy = sum(1 for h in health if h.get("TargetHealth", {}).get("State") == "healthy")
            for lb_arn in tg["LoadBalancerArns"]:
                by_lb.setdefault(lb_arn, []).append(
                    TargetGroupHealth(arn=tg["TargetGroupArn"], healthy=healthy, total=len(health)))
        for lb in pages(elb, "describe_load_balancers", "LoadBalancers"):
            yield LoadBalancer(arn=lb["LoadBalancerArn"], name=lb.get("LoadBalancerName", ""),
                               lb_type=lb.get("Type", "application"), region=region,
                               created_ns=_ns(lb.get("CreatedTime")),
                               target_groups=tuple(by_lb.get(lb["LoadBalancerArn"], ())))


def policy_actions(path: Path = IAM_POLICY) -> set[str]:
    """The actions the shipped IAM policy allows (e.g. ``ec2:DescribeInstances``)."""
    doc = json.loads(path.read_text())
    out: set[str] = set()
    for stmt in doc["Statement"]:
        acts = stmt["Action"]
        out.update([acts] if isinstance(acts, str) else acts)
    return out
