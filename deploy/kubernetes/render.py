"""Render a kustomization of deploy/kubernetes without kubectl: the subset of kustomize it uses.

``kubectl kustomize`` (or ``kubectl apply -k``) is what people run; this renders the same
objects for the tests (tests/test_kubernetes.py) on machines without kubectl, and for a quick
look: ``python -m execsight.deploy.kubernetes.render deploy/kubernetes/overlays/example``. Where kubectl
is installed the tests check that both render identical objects.

Supported, and nothing else (any other field is an error, so the subset cannot drift silently):
- ``resources``: YAML files, or directories holding a kustomization.yaml (bases);
- ``namespace``: set on every namespaced object;
- ``labels``: ``pairs`` added to every object's metadata.labels (not to selectors or templates,
  kustomize's default for ``labels``);
- ``images``: ``name`` -> ``newName`` / ``newTag`` in every container and init container;
- ``replicas``: ``name`` -> ``count`` of a Deployment;
- ``patches``: ``path`` to a strategic-merge patch naming its target by kind and metadata.name.
  Maps merge; the lists Kubernetes merges by key (containers, env, volumes, volumeMounts, ports)
  merge item by item on that key; every other list is replaced, as in a strategic merge.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = frozenset({"apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas", "patches"})
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass",
                            "CustomResourceDefinition", "StorageClass", "PersistentVolume"})
# patchMergeKey of the lists a strategic merge patch merges item by item (Kubernetes API types)
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}

Obj = dict[str, Any]


class RenderError(ValueError):
    """A kustomization this renderer cannot render; the message names the file."""


def _docs(path: Path) -> Iterator[Obj]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc:
            raise RenderError(f"{path}: every document must be a Kubernetes object")
        yield doc


def merge(base: Any, patch: Any, key: str | None = None) -> Any:
    """Strategic merge of ``patch`` into ``base`` (the subset described above)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    merge_key = MERGE_KEYS.get(key or "")
    if isinstance(base, list) and isinstance(patch, list) and merge_key:
        out_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            match = [i for i, b in enumerate(out_list) if b.get(merge_key) == item.get(merge_key)]
            if match:
                out_list[match[0]] = merge(out_list[match[0]], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


def _pod_spec(obj: Obj) -> Obj | None:
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        return spec if isinstance(spec, dict) else None
    tmpl = spec.get("jobTemplate", {}).get("spec", spec).get("template", {})
    pod = tmpl.get("spec")
    return pod if isinstance(pod, dict) else None


def _set_image(image: str, rules: list[Obj]) -> str:
    name, _, tag = image.partition(":")
    for rule in rules:
        if rule["name"] == name:
            new_tag = rule.get("newTag", tag)
            return f"{rule.get('newName', name)}:{new_tag}" if new_tag else str(rule.get("newName", name))
    return image


def render(directory: Path) -> list[Obj]:
    """Every object of the kustomization in ``directory``, transformed, in resource order."""
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    k = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(k) - SUPPORTED
    if unknown:
        raise RenderError(f"{kfile}: fields this renderer does not support: {sorted(unknown)}")
    objs: list[Obj] = []
    for res in k.get("resources", []):
        path = (directory / res).resolve()
        objs.extend(render(path) if path.is_dir() else _docs(path))
    for entry in k.get("patches", []):
        if set(entry) != {"path"}:
            raise RenderError(f"{kfile}: only `path` patches (strategic merge) are supported: {entry}")
        for patch in _docs(directory / entry["path"]):
            targets = [i for i, o in enumerate(objs) if o["kind"] == patch["kind"]
                       and o["metadata"]["name"] == patch["metadata"]["name"]]
            if len(targets) != 1:
                raise RenderError(f"{directory / entry['path']}: no single {patch['kind']}/"
                                  f"{patch['metadata']['name']} to patch")
            objs[targets[0]] = merge(objs[targets[0]], patch)
    for rule in k.get("replicas", []):
        hits = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == rule["name"]]
        if not hits:
            raise RenderError(f"{kfile}: replicas for unknown Deployment {rule['name']}")
        for o in hits:
            o["spec"]["replicas"] = int(rule["count"])
    for o in objs:
        if "namespace" in k and o["kind"] not in CLUSTER_SCOPED:
            o["metadata"]["namespace"] = k["namespace"]
        for group in k.get("labels", []):
            if set(group) - {"pairs"}:
                raise RenderError(f"{kfile}: labels support `pairs` only")
            o["metadata"].setdefault("labels", {}).update(group["pairs"])
        pod = _pod_spec(o)
        if pod is not None:
            for c in [*pod.get("containers", []), *pod.get("initContainers", [])]:
                c["image"] = _set_image(c["image"], k.get("images", []))
    return objs


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m execsight.deploy.kubernetes.render DIRECTORY", file=sys.stderr)
        return 2
    try:
        yaml.safe_dump_all(render(Path(args[0])), sys.stdout, sort_keys=False)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
