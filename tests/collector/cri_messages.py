"""runtime.v1 (k8s.io/cri-api api.proto) messages for tests, built with the protobuf runtime from descriptors.

Only the messages and fields the tests use; field numbers as in api.proto. Independent of the
collector's hand-written wire reading (services/collector/container_runtime_cri.py), which is what
the tests check against them (and against a real containerd).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
Field = tuple[str, int, int, str | None]
S, U32, I32, I64, B, M = F.TYPE_STRING, F.TYPE_UINT32, F.TYPE_INT32, F.TYPE_INT64, F.TYPE_BOOL, F.TYPE_MESSAGE
REPEATED = "repeated:"


def _build() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(name="cri_subset.proto", package="runtime.v1", syntax="proto3")

    def msg(name: str, *fields: Field, maps: tuple[tuple[str, int], ...] = ()) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, type_name in fields:
            label = F.LABEL_OPTIONAL
            if fname.startswith(REPEATED):
                fname, label = fname[len(REPEATED):], F.LABEL_REPEATED
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
        for fname, number in maps:
            entry = m.nested_type.add(name=fname.title().replace("_", "") + "Entry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=S, label=F.LABEL_OPTIONAL)
            entry.field.add(name="value", number=2, type=S, label=F.LABEL_OPTIONAL)
            m.field.add(name=fname, number=number, type=M, label=F.LABEL_REPEATED,
                        type_name=f".runtime.v1.{name}.{entry.name}")

    msg("ContainerStatusRequest", ("container_id", 1, S, None), ("verbose", 2, B, None))
    msg("PodSandboxStatusRequest", ("pod_sandbox_id", 1, S, None), ("verbose", 2, B, None))
    msg("ContainerMetadata", ("name", 1, S, None), ("attempt", 2, U32, None))
    msg("ImageSpec", ("image", 1, S, None))
    msg("ContainerStatus", ("id", 1, S, None), ("metadata", 2, M, ".runtime.v1.ContainerMetadata"),
        ("state", 3, I32, None), ("created_at", 4, I64, None), ("started_at", 5, I64, None),
        ("exit_code", 7, I32, None), ("image", 8, M, ".runtime.v1.ImageSpec"), ("image_ref", 9, S, None),
        ("log_path", 15, S, None), maps=(("labels", 12), ("annotations", 13)))
    msg("ContainerStatusResponse", ("status", 1, M, ".runtime.v1.ContainerStatus"), maps=(("info", 2),))
    msg("PodSandboxMetadata", ("name", 1, S, None), ("uid", 2, S, None), ("namespace", 3, S, None),
        ("attempt", 4, U32, None))
    msg("PodSandboxStatus", ("id", 1, S, None), ("metadata", 2, M, ".runtime.v1.PodSandboxMetadata"),
        ("state", 3, I32, None), ("created_at", 4, I64, None), ("runtime_handler", 9, S, None),
        maps=(("labels", 7), ("annotations", 8)))
    msg("PodSandboxStatusResponse", ("status", 1, M, ".runtime.v1.PodSandboxStatus"), maps=(("info", 2),))
    # what a test needs to make a pod and a container on a real containerd
    msg("NamespaceOption", ("network", 1, I32, None), ("pid", 2, I32, None), ("ipc", 3, I32, None))
    msg("LinuxSandboxSecurityContext", ("namespace_options", 1, M, ".runtime.v1.NamespaceOption"))
    msg("LinuxPodSandboxConfig", ("cgroup_parent", 1, S, None),
        ("security_context", 2, M, ".runtime.v1.LinuxSandboxSecurityContext"))
    msg("PodSandboxConfig", ("metadata", 1, M, ".runtime.v1.PodSandboxMetadata"), ("hostname", 2, S, None),
        ("log_directory", 3, S, None), ("linux", 8, M, ".runtime.v1.LinuxPodSandboxConfig"),
        maps=(("labels", 6), ("annotations", 7)))
    msg("RunPodSandboxRequest", ("config", 1, M, ".runtime.v1.PodSandboxConfig"), ("runtime_handler", 2, S, None))
    msg("RunPodSandboxResponse", ("pod_sandbox_id", 1, S, None))
    msg("ContainerConfig", ("metadata", 1, M, ".runtime.v1.ContainerMetadata"),
        ("image", 2, M, ".runtime.v1.ImageSpec"), ("repeated:command", 3, S, None), ("repeated:args", 4, S, None),
        ("log_path", 11, S, None), maps=(("labels", 9), ("annotations", 10)))
    msg("CreateContainerRequest", ("pod_sandbox_id", 1, S, None), ("config", 2, M, ".runtime.v1.ContainerConfig"),
        ("sandbox_config", 3, M, ".runtime.v1.PodSandboxConfig"))
    msg("CreateContainerResponse", ("container_id", 1, S, None))
    msg("StartContainerRequest", ("container_id", 1, S, None))
    msg("StartContainerResponse")
    msg("StopPodSandboxRequest", ("pod_sandbox_id", 1, S, None))
    msg("StopPodSandboxResponse")
    msg("RemovePodSandboxRequest", ("pod_sandbox_id", 1, S, None))
    msg("RemovePodSandboxResponse")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {t.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"runtime.v1.{t.name}"))
            for t in fdp.message_type}


MESSAGES = _build()


def call(channel: Any, method: str, request: Any, timeout: float = 60) -> Any:
    """One RuntimeService call with these messages (``method`` without the service prefix)."""
    stub = channel.unary_unary(f"/runtime.v1.RuntimeService/{method}",
                               request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=MESSAGES[f"{method}Response"].FromString)
    return stub(request, timeout=timeout)
