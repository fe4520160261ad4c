"""Plants a moto account with every case the sweep must find, and as many it must leave alone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3

from .sweep_aws_guard import seeding

PRIMARY, SECONDARY = "us-east-1", "us-west-2"


@dataclass
class Planted:
    # (kind, resource_id, region, reason) of every finding the sweep must report, and nothing else
    expected: set[tuple[str, str, str | None, str]] = field(default_factory=set)
    busy_instances: list[str] = field(default_factory=list)  # a collector reports work on them
    idle_instances: list[str] = field(default_factory=list)  # a collector reports no work since long
    ids: dict[str, str] = field(default_factory=dict)


def _run(ec2: Any, image: str, itype: str = "m5.large", tags: dict[str, str] | None = None) -> str:
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()]}]
    kw: dict[str, Any] = {"TagSpecifications": spec} if tags else {}
    return str(ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType=itype, **kw)
               ["Instances"][0]["InstanceId"])


def _register(ecs: Any, cluster: str, instance_id: str, region: str) -> None:
    ecs.register_container_instance(
        cluster=cluster, instanceIdentityDocument=json.dumps({"instanceId": instance_id, "region": region}))


def plant() -> Planted:
    p = Planted()
    with seeding():
        r = PRIMARY
        ec2 = boto3.client("ec2", region_name=r)
        ecs = boto3.client("ecs", region_name=r)
        image = ec2.describe_images()["Images"][0]["ImageId"]
        role = boto3.client("iam", region_name=r).create_role(
            RoleName="sweep-test", AssumeRolePolicyDocument="{}")["Role"]["Arn"]

        busy = _run(ec2, image, "m5.xlarge")
        idle = _run(ec2, image, "c5.2xlarge")
        silent = _run(ec2, image, "m5.large")
        p.busy_instances.append(busy)
        p.idle_instances.append(idle)
        p.expected.add(("idle_instance", idle, r, "allocated_after_completion"))
        p.expected.add(("unmonitored_instance", silent, r, "no_collector"))
        stopped = _run(ec2, image)
        ec2.stop_instances(InstanceIds=[stopped])

        # AWS Batch: a live compute environment (its ECS cluster lists one member), a member it does
        # not list, and a member of a compute environment that was deleted
        batch = boto3.client("batch", region_name=r)
        batch.create_compute_environment(computeEnvironmentName="ce-live", type="UNMANAGED", serviceRole=role)
        ce = batch.describe_compute_environments(computeEnvironments=["ce-live"])["computeEnvironments"][0]
        batch_ok = _run(ec2, image, tags={"aws:batch:compute-environment": "ce-live"})
        _register(ecs, ce["ecsClusterArn"], batch_ok, r)
        p.busy_instances.append(batch_ok)
        batch_unlisted = _run(ec2, image, tags={"aws:batch:compute-environment": "ce-live"})
        p.expected.add(("orphaned_scheduler_node", batch_unlisted, r, "batch_compute_environment_not_listing"))
        batch_gone = _run(ec2, image, tags={"aws:batch:compute-environment": "ce-deleted"})
        p.expected.add(("orphaned_scheduler_node", batch_gone, r, "batch_compute_environment_missing"))

        # ECS: cluster "web" lists one member, not the other; a member of a cluster that is gone
        ecs.create_cluster(clusterName="web")
        ecs_ok = _run(ec2, image, tags={"ecs:cluster": "web"})
        _register(ecs, "web", ecs_ok, r)
        p.busy_instances.append(ecs_ok)
        ecs_unlisted = _run(ec2, image, tags={"ecs:cluster": "web"})
        p.expected.add(("orphaned_scheduler_node", ecs_unlisted, r, "ecs_cluster_not_listing"))
        ecs_gone = _run(ec2, image, tags={"aws:ecs:clusterName": "batch-2023"})
        p.expected.add(("orphaned_scheduler_node", ecs_gone, r, "ecs_cluster_missing"))

        # EKS: node group ng1 exists; ng-old does not
        eks = boto3.client("eks", region_name=r)
        eks.create_cluster(name="k1", roleArn=role, resourcesVpcConfig={})
        eks.create_nodegroup(clusterName="k1", nodegroupName="ng1", nodeRole=role, subnets=["subnet-1"])
        eks_ok = _run(ec2, image, tags={"eks:cluster-name": "k1", "eks:nodegroup-name": "ng1"})
        p.busy_instances.append(eks_ok)
        eks_gone = _run(ec2, image, tags={"eks:cluster-name": "k1", "eks:nodegroup-name": "ng-old"})
        p.expected.add(("orphaned_scheduler_node", eks_gone, r, "eks_nodegroup_missing"))

        # storage: one unattached volume, one attached; snapshots of a deleted and of a live volume
        az = f"{r}a"
        loose = ec2.create_volume(AvailabilityZone=az, Size=100, VolumeType="gp3")["VolumeId"]
        p.expected.add(("unattached_volume", loose, r, "volume_available"))
        attached = ec2.create_volume(AvailabilityZone=az, Size=20, VolumeType="gp3")["VolumeId"]
        ec2.attach_volume(VolumeId=attached, InstanceId=busy, Device="/dev/sdf")
        ec2.create_snapshot(VolumeId=attached)
        doomed = ec2.create_volume(AvailabilityZone=az, Size=50, VolumeType="gp2")["VolumeId"]
        orphan_snap = ec2.create_snapshot(VolumeId=doomed)["SnapshotId"]
        ec2.delete_volume(VolumeId=doomed)
        p.expected.add(("orphaned_snapshot", orphan_snap, r, "source_volume_gone"))

        # Elastic IPs: one free, one on the busy instance
        free = ec2.allocate_address(Domain="vpc")["AllocationId"]
        p.expected.add(("unassociated_eip", free, r, "not_associated"))
        used = ec2.allocate_address(Domain="vpc")["AllocationId"]
        ec2.associate_address(AllocationId=used, InstanceId=busy)

        # load balancers: healthy target, a target group with no targets, no target group at all
        elb = boto3.client("elbv2", region_name=r)
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
        for name, targets in (("lb-ok", [busy]), ("lb-empty-tg", []), ("lb-bare", None)):
            lb = elb.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]
            if targets is None:
                p.expected.add(("idle_load_balancer", lb["LoadBalancerArn"], r, "no_target_groups"))
                continue
            tg = elb.create_target_group(Name=f"tg-{name}", Protocol="HTTP", Port=80, VpcId=vpc,
                                         TargetType="instance")["TargetGroups"][0]
            if targets:
                elb.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": t} for t in targets])
            else:
                p.expected.add(("idle_load_balancer", lb["LoadBalancerArn"], r, "no_healthy_targets"))
            elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                                DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])

        # a second region: one unattached volume and one instance nobody watches
        r2 = SECONDARY
        ec2b = boto3.client("ec2", region_name=r2)
        vol2 = ec2b.create_volume(AvailabilityZone=f"{r2}b", Size=10, VolumeType="gp2")["VolumeId"]
        p.expected.add(("unattached_volume", vol2, r2, "volume_available"))
        image2 = ec2b.describe_images()["Images"][0]["ImageId"]
        silent2 = _run(ec2b, image2, "t3.large")
        p.expected.add(("unmonitored_instance", silent2, r2, "no_collector"))
    return p
