"""The Kubernetes manifest: every document valid for a real Kubernetes version (strictly, so an
unknown field fails), probes, mounts and security as documented, and a command line and a
configuration that the real CLI accepts."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent.cli import parser
from agent.config import DEFAULT_PORT, load
from agent.flags import overrides

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy" / "kubernetes" / "daemonset.yaml"
KUBERNETES_VERSION = "1.33.0"


def documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def one(kind: str) -> dict[str, Any]:
    found = [doc for doc in documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("DaemonSet")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    main: dict[str, Any] = containers[0]
    return main


def host_path(container_path: str) -> str:
    """The node's path behind a path in the container, through the hostPath volume mounts
    (a path below a mount point maps below the node's path)."""
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    path = Path(container_path)
    for mount in sorted(container()["volumeMounts"], key=lambda m: -len(m["mountPath"])):
        if path.is_relative_to(mount["mountPath"]):
            node = Path(volumes[mount["name"]]["hostPath"]["path"])
            return str(node / path.relative_to(mount["mountPath"]))
    raise AssertionError(f"{container_path} is not under a volume mount")


def config_file(tmp_path: Path, container_path: str) -> Path:
    """The ConfigMap key mounted at container_path, written to a file."""
    mount_path, _, key = container_path.rpartition("/")
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    mount = next(m for m in container()["volumeMounts"] if m["mountPath"] == mount_path)
    config_map = one("ConfigMap")
    assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    path = tmp_path / key
    path.write_text(config_map["data"][key])
    return path


def test_every_document_is_valid_kubernetes() -> None:
    kinds = []
    for doc in documents():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        kinds.append(doc["kind"])
    assert sorted(kinds) == ["ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"]
    namespaces = {doc["metadata"].get("namespace") for doc in documents()
                  if doc["kind"] != "Namespace"}
    assert namespaces == {one("Namespace")["metadata"]["name"]}


def test_validation_is_strict() -> None:
    daemonset = copy.deepcopy(one("DaemonSet"))
    daemonset["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, KUBERNETES_VERSION, strict=True)


def test_probes_use_the_health_endpoints_on_the_metrics_port() -> None:
    main = container()
    ports = {port["name"]: port for port in main["ports"]}
    assert ports["metrics"]["containerPort"] == DEFAULT_PORT
    assert main["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    assert main["startupProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    annotations = one("DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(DEFAULT_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_host_filesystems_are_mounted_read_only() -> None:
    for mount in container()["volumeMounts"]:
        assert mount["readOnly"] is True, mount["name"]
    assert host_path("/host/proc") == "/proc"
    assert host_path("/host/sys") == "/sys"
    assert host_path("/host/root") == "/"


def test_runs_as_nobody_without_privileges_on_every_node() -> None:
    spec = pod_spec()
    assert spec["hostNetwork"] is True
    assert spec["automountServiceAccountToken"] is False
    assert {"operator": "Exists"} in spec["tolerations"]
    for context in (spec["securityContext"], container()["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 65534
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    resources = container()["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()


def test_config_map_passes_check_config(tmp_path: Path) -> None:
    path = config_file(tmp_path, "/etc/hostagent/hostagent.yml")
    checked = subprocess.run([sys.executable, "-m", "agent", "check-config", str(path)],
                             capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_container_arguments_are_accepted_by_the_cli(tmp_path: Path) -> None:
    main = container()
    assert main["command"] == ["hostagent"]
    args = main["args"]
    assert args[0] == "run"
    parsed = parser().parse_args(args)
    assert parsed.config == Path("/etc/hostagent/hostagent.yml")
    paths = load(None, overrides(parsed)).paths
    assert (paths.procfs, paths.sysfs, paths.rootfs) == (
        Path("/host/proc"), Path("/host/sys"), Path("/host/root"))

    # The same flags on this machine: container paths replaced by the node's paths behind them.
    translated = []
    for arg in args[1:]:
        flag, _, value = arg.partition("=")
        if flag == "--config":
            value = str(config_file(tmp_path, value))
        elif flag.startswith("--path."):
            value = host_path(value)
        translated.append(f"{flag}={value}")
    collected = subprocess.run(
        [sys.executable, "-m", "agent", "collect", "--once", *translated,
         "--collector.disable-defaults", "--collector.load", "--collector.filesystem"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert collected.returncode == 0, collected.stderr
    assert "node_load1 " in collected.stdout
