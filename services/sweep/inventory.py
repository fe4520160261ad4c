"""The read-only cloud inventory of one region, as plain values (what aws_scanner fills, what
inventory_rules reads)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Tags that say which scheduler an instance belongs to.
BATCH_CE_TAG = "aws:batch:compute-environment"
ECS_CLUSTER_TAGS = ("aws:ecs:clusterName", "ecs:cluster")
EKS_CLUSTER_TAG = "eks:cluster-name"
EKS_NODEGROUP_TAG = "eks:nodegroup-name"


@dataclass(frozen=True)
class Instance:
    instance_id: str
    region: str
    instance_type: str
    state: str
    launch_ns: int
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Volume:
    volume_id: str
    region: str
    volume_type: str
    size_gb: int
    state: str
    create_ns: int


@dataclass(frozen=True)
class Address:
    allocation_id: str
    public_ip: str
    region: str
    association_id: str | None
    instance_id: str | None


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    region: str
    volume_id: str | None
    size_gb: int
    start_ns: int
    owner_id: str
    description: str = ""


@dataclass(frozen=True)
class ComputeEnvironment:
    name: str
    arn: str
    ecs_cluster_arn: str | None
    status: str


@dataclass(frozen=True)
class EcsCluster:
    arn: str
    name: str
    status: str
    ec2_instance_ids: frozenset[str]


@dataclass(frozen=True)
class EksNodegroup:
    cluster: str
    name: str
    asg_names: tuple[str, ...]
    # instances of its auto-scaling groups; None when none of the groups could be found
    asg_instance_ids: frozenset[str] | None


@dataclass(frozen=True)
class TargetGroupHealth:
    arn: str
    healthy: int
    total: int


@dataclass(frozen=True)
class LoadBalancer:
    arn: str
    name: str
    lb_type: str
    region: str
    created_ns: int
    target_groups: tuple[TargetGroupHealth, ...]


@dataclass(frozen=True)
class RegionInventory:
    region: str
    account_id: str
    scanned_ns: int
    instances: tuple[Instance, ...] = ()
    volumes: tuple[Volume, ...] = ()
    addresses: tuple[Address, ...] = ()
    snapshots: tuple[Snapshot, ...] = ()
    ami_snapshot_ids: frozenset[str] = frozenset()
    compute_environments: tuple[ComputeEnvironment, ...] = ()
    ecs_clusters: tuple[EcsCluster, ...] = ()
    eks_clusters: frozenset[str] = frozenset()
    eks_nodegroups: tuple[EksNodegroup, ...] = ()
    load_balancers: tuple[LoadBalancer, ...] = ()
