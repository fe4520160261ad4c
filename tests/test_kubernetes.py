"""The Kubernetes manifests (deploy/kubernetes): rendered, valid for two Kubernetes versions, least privilege.

Rendered with deploy/kubernetes/render.py (the kustomize subset the manifests use; no kubectl
here) and validated with kubernetes-validate, which ships the API schemas of each version.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]

from execsight.deploy.kubernetes.render import RenderError, merge, render
from execsight.settings import SETTINGS_DOC

ROOT = Path(__file__).resolve().parent.parent
KDIR = ROOT / "deploy" / "kubernetes"
BASE = KDIR / "base"
OVERLAY = KDIR / "overlays" / "example"
WORKLOADS = frozenset({"DaemonSet", "Deployment", "Job"})
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL|SASL|CREDENTIAL", re.I)
ALLOWED = {v.env for v in SETTINGS_DOC}


def _versions() -> list[str]:
    """The two newest Kubernetes versions whose schemas kubernetes-validate ships."""
    shipped = set(all_versions())  # listed once per flavour (local, local-strict)
    newest = sorted(shipped, key=lambda v: tuple(int(x) for x in v.split(".")), reverse=True)
    return newest[:2]


VERSIONS = _versions()


@pytest.fixture(scope="module", params=["base", "overlay"])
def objs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(BASE if request.param == "base" else OVERLAY)


def _named(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}"
    return hits[0]


def _pod(o: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = o["spec"]["template"]["spec"]
    return pod


def _workloads(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in WORKLOADS]


def _component(o: dict[str, Any]) -> str:
    return str(o["metadata"]["labels"]["app.kubernetes.io/component"])


def test_two_recent_kubernetes_versions_are_checked() -> None:
    assert len(VERSIONS) == 2 and VERSIONS[0] != VERSIONS[1]
    assert all(int(v.split(".")[1]) >= 30 for v in VERSIONS), VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_for_the_kubernetes_api(objs: list[dict[str, Any]], version: str) -> None:
    assert len(objs) >= 15
    for o in objs:
        # strict: a field the API does not know (a typo) is an error too
        kubernetes_validate.validate(o, version, strict=True)


def test_the_validator_rejects_a_broken_object() -> None:
    # the check above could fail: an unknown field (strict) and a wrong type are each refused
    collector = _named(render(BASE), "DaemonSet", "execsight-collector")
    for wrong in ({"hostPIDs": True}, {"hostPID": "yes"}):
        bad = merge(collector, {"spec": {"template": {"spec": wrong}}})
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, VERSIONS[0], strict=True)


def test_the_expected_objects_are_there(objs: list[dict[str, Any]]) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for comp in ("correlator", "tune", "sweep", "ui"):
        assert ("Deployment", f"execsight-{comp}") in kinds
    assert ("DaemonSet", "execsight-collector") in kinds
    for svc in ("collector", "correlator", "ui"):
        assert ("Service", f"execsight-{svc}") in kinds
    assert ("NetworkPolicy", "default-deny") in kinds
    assert all(o["metadata"].get("namespace") == "execsight" for o in objs if o["kind"] != "Namespace")
    # no Secret is defined by the manifests: no default password can ship with them
    assert not [o for o in objs if o["kind"] == "Secret"]


def test_only_the_collector_is_privileged_or_shares_the_hosts_namespaces(objs: list[dict[str, Any]]) -> None:
    for o in _workloads(objs):
        pod = _pod(o)
        privileged = [c["name"] for c in pod["containers"] if c.get("securityContext", {}).get("privileged")]
        host = [k for k in ("hostPID", "hostNetwork", "hostIPC") if pod.get(k)]
        host_paths = [v["name"] for v in pod.get("volumes", []) if "hostPath" in v]
        if o["kind"] == "DaemonSet" and _component(o) == "collector":
            assert privileged == ["collector"] and host == ["hostPID"]
            assert {"tracefs", "debugfs", "btf", "modules", "usr-src", "machine-id"} <= set(host_paths)
        else:
            assert (privileged, host, host_paths) == ([], [], []), o["metadata"]["name"]


def test_collector_runs_on_every_node_with_the_hosts_identity(objs: list[dict[str, Any]]) -> None:
    ds = _named(objs, "DaemonSet", "execsight-collector")
    pod = _pod(ds)
    assert {"operator": "Exists"} in pod["tolerations"]  # every taint, control plane included
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mid = mounts["/etc/machine-id"]
    assert mid.get("readOnly") and volumes[mid["name"]]["hostPath"] == {"path": "/etc/machine-id", "type": "File"}
    for path in ("/sys/kernel/btf", "/lib/modules", "/usr/src", "/sys/fs/cgroup"):
        assert mounts[path].get("readOnly"), path
    assert {"/sys/kernel/tracing", "/sys/kernel/debug"} <= set(mounts)
    assert "EXECSIGHT_HOST_ID" not in {e["name"] for e in pod["containers"][0].get("env", [])}


def test_every_other_container_has_least_privilege(objs: list[dict[str, Any]]) -> None:
    checked = 0
    for o in _workloads(objs):
        pod = _pod(o)
        psc = pod.get("securityContext", {})
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") is True, c["name"]
            seccomp = sc.get("seccompProfile") or psc.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, c["name"]
            if _component(o) == "collector":
                continue
            checked += 1
            assert psc.get("runAsNonRoot") is True and int(psc.get("runAsUser", 0)) > 0, c["name"]
            assert sc.get("allowPrivilegeEscalation") is False, c["name"]
            assert sc.get("capabilities") == {"drop": ["ALL"]}, c["name"]
            assert not sc.get("privileged"), c["name"]
        assert pod.get("automountServiceAccountToken") is False, o["metadata"]["name"]
    assert checked >= 6  # correlator, tune, sweep, ui, topics, migrate (and the overlay's notify)


def test_writable_paths_are_emptydirs_or_the_collectors_state(objs: list[dict[str, Any]]) -> None:
    for o in _workloads(objs):
        pod = _pod(o)
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            for m in c.get("volumeMounts", []):
                if m.get("readOnly"):
                    continue
                vol = volumes[m["name"]]
                assert "emptyDir" in vol or _component(o) == "collector", (c["name"], m["mountPath"])
            assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])}, c["name"]


def test_every_long_running_workload_has_probes_and_resources(objs: list[dict[str, Any]]) -> None:
    for o in _workloads(objs):
        for c in _pod(o)["containers"]:
            res = c.get("resources", {})
            assert set(res.get("requests", {})) >= {"cpu", "memory"}, c["name"]
            assert set(res.get("limits", {})) >= {"cpu", "memory"}, c["name"]
            if o["kind"] != "Job":
                assert "livenessProbe" in c and "readinessProbe" in c, c["name"]


def test_probes_use_the_endpoints_the_services_serve(objs: list[dict[str, Any]]) -> None:
    def probe_of(name: str, kind: str = "Deployment") -> dict[str, Any]:
        c = _pod(_named(objs, kind, f"execsight-{name}"))["containers"][0]
        port = {p["name"]: p["containerPort"] for p in c["ports"]}
        get = c["readinessProbe"]["httpGet"]
        return {"path": get["path"], "port": port[get["port"]]}

    config = _named(objs, "ConfigMap", "execsight-config")["data"]
    assert probe_of("correlator") == {"path": "/metrics", "port": int(config["EXECSIGHT_CORRELATOR_METRICS_PORT"])}
    assert probe_of("collector", "DaemonSet") == {"path": "/metrics",
                                                  "port": int(config["EXECSIGHT_COLLECTOR_METRICS_PORT"])}
    assert probe_of("ui") == {"path": "/_stcore/health", "port": int(config["EXECSIGHT_UI_PORT"])}
    # probes from the kubelet reach the pod's address, not its loopback
    assert config["EXECSIGHT_METRICS_ADDRESS"] == "0.0.0.0" and config["EXECSIGHT_UI_ADDRESS"] == "0.0.0.0"
    assert config["EXECSIGHT_UI_AUTH"] != "none"


def test_configmap_holds_allow_listed_settings_and_no_secrets(objs: list[dict[str, Any]]) -> None:
    as_env = {src["configMapRef"]["name"] for o in _workloads(objs) for c in _pod(o)["containers"]
              for src in c.get("envFrom", []) if "configMapRef" in src}
    assert as_env == {"execsight-config"}
    for cm in (o for o in objs if o["kind"] == "ConfigMap"):
        for key, value in cm["data"].items():
            if cm["metadata"]["name"] in as_env:
                assert key in ALLOWED, key
                assert not SECRET_WORDS.search(key), key
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", str(value)), key  # no user:password@ in a URL
            assert not re.search(r"https?://", str(value)), key  # no webhook or other URL: they are secrets


def test_credentials_come_from_secrets_only(objs: list[dict[str, Any]]) -> None:
    refs: set[tuple[str, str]] = set()
    for o in _workloads(objs):
        for c in _pod(o)["containers"]:
            for src in c.get("envFrom", []):  # whole Secrets: the notifier's webhook URLs
                if "secretRef" in src:
                    refs.add((src["secretRef"]["name"], "*"))
            for e in c.get("env", []):
                assert e["name"] in ALLOWED or e["name"] == "HOME", e["name"]
                if SECRET_WORDS.search(e["name"]):
                    assert "value" not in e, e["name"]
                    ref = e["valueFrom"]["secretKeyRef"]
                    refs.add((ref["name"], ref["key"]))
    assert refs - {("execsight-notify", "*")} == {
        ("execsight-db", "EXECSIGHT_DATABASE_URL"), ("execsight-db", "EXECSIGHT_UI_DATABASE_URL"),
        ("execsight-ui", "EXECSIGHT_UI_PASSWORD")}
    # the README tells how to create each of them
    readme = (ROOT / "README.md").read_text()
    for secret, key in refs:
        assert secret in readme and (key == "*" or key in readme), (secret, key)


def test_network_policy_denies_by_default_and_allows_the_designs_flows(objs: list[dict[str, Any]]) -> None:
    pols = {o["metadata"]["name"]: o["spec"] for o in objs if o["kind"] == "NetworkPolicy"}
    assert pols["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def egress_ports(component: str) -> set[int]:
        ports: set[int] = set()
        for spec in pols.values():
            sel = spec["podSelector"]
            chosen = sel == {} or sel.get("matchLabels", {}).get("app.kubernetes.io/component") == component or any(
                component in e["values"] for e in sel.get("matchExpressions", []))
            if chosen:
                ports |= {p["port"] for rule in spec.get("egress", []) for p in rule.get("ports", [])}
        return ports

    assert egress_ports("collector") == {53, 9092, 80}  # no database for the privileged pod
    assert egress_ports("correlator") == {53, 9092, 5432}
    assert egress_ports("ui") == {53, 5432}  # the dashboard reads the database only
    assert egress_ports("migrate") == {53, 5432}
    assert egress_ports("topics") == {53, 9092}
    assert egress_ports("sweep") == {53, 9092, 5432, 443}
    ingress = {n: s for n, s in pols.items() if "Ingress" in s["policyTypes"] and n != "default-deny"}
    assert set(ingress) - {"allow-notify"} == {"allow-ui", "allow-metrics-scrape"}
    if "allow-notify" in pols:  # the overlay's notifier: Kafka and the webhooks only
        assert egress_ports("notify") == {53, 9092, 443}


def test_overlay_narrows_endpoints_and_scales_the_correlator() -> None:
    objs = render(OVERLAY)
    assert _named(objs, "Deployment", "execsight-correlator")["spec"]["replicas"] == 2
    notify = _pod(_named(objs, "Deployment", "execsight-notify"))
    routes = yaml.safe_load(_named(objs, "ConfigMap", "execsight-notify-routes")["data"]["notify.yaml"])
    assert routes["routes"][0]["url_env"] and "url" not in routes["routes"][0]  # the URL is a secret
    assert notify["volumes"][0]["configMap"]["name"] == "execsight-notify-routes"
    kafka = _named(objs, "NetworkPolicy", "allow-kafka")["spec"]["egress"]
    assert kafka[0]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert {c["image"] for o in _workloads(objs) for c in _pod(o)["containers"]} == {
        "registry.example.com/execsight:0.1.0"}
    cm = _named(objs, "ConfigMap", "execsight-config")["data"]
    assert cm["EXECSIGHT_AWS_REGIONS"] == "eu-west-1" and cm["EXECSIGHT_LOG_FORMAT"] == "json"  # merged, not replaced


def test_renderer_merges_lists_by_their_kubernetes_keys() -> None:
    base = {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "args": ["x"]}]}
    out = merge(base, {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}], "args": ["y"]}]})
    assert out["containers"][0]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    assert out["containers"][0]["args"] == ["y"]  # no merge key: replaced
    assert base["containers"][0]["args"] == ["x"]  # the base is not changed


def test_renderer_refuses_what_it_does_not_support(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [], "configMapGenerator": []}))
    with pytest.raises(RenderError, match="configMapGenerator"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [str(BASE)],
                                                                 "patches": [{"path": "p.yaml"}]}))
    (tmp_path / "p.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nope\n")
    with pytest.raises(RenderError, match="ConfigMap/nope"):
        render(tmp_path)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: the renderer alone is checked")
@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_renderer_matches_kubectl_kustomize(directory: Path) -> None:
    """Where kubectl is installed, its kustomize renders exactly the objects the renderer does."""
    out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    ref = [o for o in yaml.safe_load_all(out) if o]

    def by_name(objs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
        return {(o["kind"], o["metadata"]["name"]): json.dumps(o, sort_keys=True) for o in objs}

    assert by_name(render(directory)) == by_name(ref)
