"""deploy/kubernetes/, checked without a cluster (none runs on these machines).

* Kubernetes' own objects validate against the Kubernetes ``KUBERNETES_VERSION`` OpenAPI
  schemas, strictly (an unknown field is an error), with the ``kubernetes-validate`` package.
* The Prometheus Operator's objects (ServiceMonitor, PrometheusRule) are custom resources that
  package has no schema for, and no CRD schema is available offline here: they are checked
  structurally instead, and every ``orch_*`` metric the alerts name is checked against a running
  service's ``/metrics``.
* checkov (``make install-checkov``: its own virtual environment, see requirements-checkov.txt)
  finds no failed check, and every skip carries its reason inline.
* The invariants the operator relies on: what the Deployment runs and how, the drain timing
  against the service's shutdown grace, the configuration loading with the service's own
  settings, secrets only as files from a Secret, selectors that match.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from orchestration_service.config import load_settings
from orchestration_service.secret_files import SECRET_SETTINGS
from tests.conftest import REQUIRE_SERVICES, Service
from tests.process import BIN

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"
CHECKOV = Path(os.environ.get("ORCH_CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
SECRET_EXAMPLE = "secret.example.yaml"
NAMESPACE = "dats-orchestration"
PRESTOP_SLEEP_SECONDS = 5
RELAY_FLUSH_MAX_SECONDS = 10.0  # container.stop: relay.stop(flush_timeout=min(grace, 10))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return data


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every manifest file (the example Secret too), by file name."""
    return {p.name: documents(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"}


def objects(kind: str) -> list[dict[str, Any]]:
    return [d for docs in manifests().values() for d in docs if d["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    (found,) = objects(kind)
    return found


def container_of(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(container)


def configuration() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(one("ConfigMap")["data"]["orchestration-service.yaml"])
    return data


# -- files and kustomization ----------------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    listed = kustomization()["resources"]
    assert sorted(listed) == sorted(name for name in manifests() if name != SECRET_EXAMPLE)
    assert kustomization()["namespace"] == NAMESPACE
    kinds = {d["kind"] for name in listed for d in documents(K8S / name)}
    assert kinds >= {
        "Deployment",
        "Service",
        "Job",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    }
    for docs in manifests().values():
        for doc in docs:
            assert doc["metadata"].get("namespace", NAMESPACE) == NAMESPACE or doc["kind"] == "Namespace"


@pytest.mark.parametrize("name", sorted(manifests()))
def test_builtin_objects_validate_against_the_kubernetes_schemas(name: str) -> None:
    for doc in manifests()[name]:
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_mistake() -> None:
    deployment = one("Deployment")
    broken = json.loads(json.dumps(deployment))
    # A misspelt field ("paht"): strict validation refuses what Kubernetes would silently drop.
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    typed = json.loads(json.dumps(deployment))
    typed["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typed, KUBERNETES_VERSION, strict=True)


# -- the Deployment ---------------------------------------------------------------------------------


def test_deployment_runs_two_replicas_of_serve_without_migrating() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = container_of(deployment)
    assert container["args"] == ["serve", "--no-migrate"]
    help_text = subprocess.run(
        [str(BIN), "serve", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "--no-migrate" in help_text, "serve must accept --no-migrate"
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][:2] == ["db", "wait"] and init["image"] == container["image"]
    assert init["securityContext"] == container["securityContext"]
    assert init["volumeMounts"] == container["volumeMounts"] and init["env"] == container["env"]
    wait_help = subprocess.run(
        [str(BIN), "db", "wait", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "--timeout" in wait_help
    job = one("Job")
    assert container_of(job)["args"] == ["db", "upgrade"]
    assert container_of(job)["image"] == container["image"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_image_is_the_projects_with_its_version() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (image,) = kustomization()["images"]
    assert image["newTag"] == version
    for workload in (one("Deployment"), one("Job")):
        assert container_of(workload)["image"] == f"{image['name']}:{version}"


def test_probes_requests_and_limits() -> None:
    container = container_of(one("Deployment"))
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/v1/health/live"
    (port,) = container["ports"]
    assert port["containerPort"] == configuration()["server"]["port"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"], probe
    for workload in (one("Deployment"), one("Job")):
        resources = container_of(workload)["resources"]
        for key in ("cpu", "memory"):
            assert key in resources["requests"] and key in resources["limits"], key


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_are_locked_down(kind: str) -> None:
    workload = one(kind)
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    security = container_of(workload)["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] >= 10000
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    # The one writable place, an emptyDir at /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container_of(workload)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The image's user (Dockerfile: USER 10001:10001).
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"USER {security['runAsUser']}:{security['runAsGroup']}" in dockerfile


def test_termination_grace_covers_the_sigterm_drain() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    container = container_of(one("Deployment"))
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(PRESTOP_SLEEP_SECONDS)]
    grace = float(configuration()["server"]["shutdown_grace_seconds"])
    drain = PRESTOP_SLEEP_SECONDS + grace + min(grace, RELAY_FLUSH_MAX_SECONDS)
    total = pod["terminationGracePeriodSeconds"]
    assert drain < total <= drain + 30, f"terminationGracePeriodSeconds {total} vs drain {drain}"


# -- configuration and secrets ----------------------------------------------------------------------


def example_secrets(tmp_path: Path) -> Path:
    """secret.example.yaml laid out as Kubernetes mounts a Secret: one file per key."""
    (secret,) = documents(K8S / SECRET_EXAMPLE)
    directory = tmp_path / "secrets"
    directory.mkdir()
    for key, value in secret["stringData"].items():
        (directory / key).write_text(value)
    return directory


def test_the_configuration_and_the_secret_load_with_the_service_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "orchestration-service.yaml"
    config.write_text(one("ConfigMap")["data"]["orchestration-service.yaml"])
    for var in list(os.environ):
        if var.startswith("ORCH_"):
            monkeypatch.delenv(var)
    container = container_of(one("Deployment"))
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    # The container's own paths, pointed at the files laid out here.
    assert env["ORCH_CONFIG"] == mounts["config"]["mountPath"]
    assert env["ORCH_SECRETS_DIR"] == mounts["secrets"]["mountPath"]
    monkeypatch.setenv("ORCH_CONFIG", str(config))
    monkeypatch.setenv("ORCH_SECRETS_DIR", str(example_secrets(tmp_path)))
    settings = load_settings()
    assert settings.storage.database_url.startswith("postgresql+asyncpg://")
    assert settings.events.broker_url.startswith("amqp://")
    assert settings.auth.enabled and settings.auth.bootstrap_admin_key is not None
    assert settings.server.host == "0.0.0.0", "the pod's interfaces, or the Service cannot reach it"
    assert settings.logging.format == "json"
    (secret,) = documents(K8S / SECRET_EXAMPLE)
    assert set(secret["stringData"]) == set(SECRET_SETTINGS)
    for value in secret["stringData"].values():
        assert "change-me" in value, "the example holds placeholders only"


def test_secrets_reach_the_pods_only_as_files() -> None:
    secret_name = documents(K8S / SECRET_EXAMPLE)[0]["metadata"]["name"]
    for name in kustomization()["resources"]:
        for doc in documents(K8S / name):
            assert doc["kind"] != "Secret", f"{name}: no Secret in the applied manifests"
            text = yaml.safe_dump(doc)
            assert "secretKeyRef" not in text and "envFrom" not in text, name
            assert not re.search(r"://[^/\s:@]+:[^@\s]+@", text), f"{name}: a URL with a password"
    for kind in ("Deployment", "Job"):
        workload = one(kind)
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert volumes["secrets"]["secret"]["secretName"] == secret_name
        env = {e["name"] for e in container_of(workload)["env"]}
        assert not env & set(SECRET_SETTINGS), f"{kind}: a secret setting as a variable"


# -- Service, HPA, PDB, NetworkPolicy ---------------------------------------------------------------


def pod_labels() -> dict[str, str]:
    labels: dict[str, str] = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str]) -> bool:
    return all(pod_labels().get(k) == v for k, v in selector.items())


def test_selectors_match_the_pods() -> None:
    deployment = one("Deployment")
    assert selects(deployment["spec"]["selector"]["matchLabels"])
    service = one("Service")
    assert selects(service["spec"]["selector"])
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == container_of(deployment)["ports"][0]["name"]
    assert selects(one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects(one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"])
    job_labels = one("Job")["spec"]["template"]["metadata"]["labels"]
    assert not all(job_labels.get(k) == v for k, v in service["spec"]["selector"].items()), (
        "the Service must not route to the migration Job"
    )
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] >= deployment["spec"]["replicas"]
    assert one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_replicas_at_most_fit_postgresqls_default_connection_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(one("ConfigMap")["data"]["orchestration-service.yaml"])
    monkeypatch.setenv("ORCH_CONFIG", str(config))
    storage = load_settings().storage
    own = 4  # relay leader, its publisher, the feed's listener, wake-ups
    per_replica = storage.pool_size + storage.max_overflow + storage.fast_pool_size + own
    assert one("HorizontalPodAutoscaler")["spec"]["maxReplicas"] * per_replica <= 100


def test_network_policy_admits_only_what_the_service_needs() -> None:
    policy = one("NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": configuration()["server"]["port"], "protocol": "TCP"}]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule.get("ports", [])}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (5432, "TCP"), (5672, "TCP"), (5671, "TCP")}
    for rule in policy["egress"]:
        assert rule.get("ports") or rule.get("to"), "no rule may open every port to everywhere"


# -- Prometheus Operator objects (custom resources: structural checks) ------------------------------


def test_service_monitor_scrapes_the_services_metrics_port() -> None:
    monitor = one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one("Service")
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert configuration()["observability"]["metrics_enabled"] is True


DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
REQUIRED_ALERTS = {
    "OrchestrationServiceNoReadyReplica",  # readiness lost
    "OrchestrationDependencyDown",
    "OrchestrationOutboxBacklog",
    "OrchestrationOutboxStale",
    "OrchestrationEventsDeadLettered",
    "OrchestrationHttp5xxRate",
    "OrchestrationTasksWaitingTooLong",
    "OrchestrationRelayLeaderMissing",
}


def alert_rules() -> list[dict[str, Any]]:
    rule = one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_prometheus_rules_are_well_formed_and_cover_what_an_operator_needs() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["expr"].strip(), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        assert rule["expr"].count("{") == rule["expr"].count("}"), rule["alert"]
        if "for" in rule:
            assert DURATION.match(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        for window in re.findall(r"\[([^\]]+)\]", rule["expr"]):
            assert DURATION.match(window), f"{rule['alert']}: [{window}]"
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job == one("Service")["metadata"]["name"], "job is the Service's name"


def metric_names_in_rules() -> set[str]:
    out = set()
    for rule in alert_rules():
        for name in re.findall(r"\b(orch_[a-z_]+)", rule["expr"]):
            # A histogram's series carry suffixes; /metrics declares the family.
            out.add(re.sub(r"_(count|sum|bucket)$", "", name))
    return out


async def test_alerts_name_only_metrics_the_service_exports(service: Service) -> None:
    assert service.container.gauges is not None
    await service.container.gauges.refresh()
    await service.client.get("/api/v1/tasks", params={"project_id": "k8s"})  # an HTTP series
    text = (await service.client.get("/metrics")).text
    exported = set(re.findall(r"^# TYPE (orch_[a-z_]+) ", text, re.MULTILINE))
    names = metric_names_in_rules()
    assert len(names) >= 6, names
    assert names <= exported, f"not exported: {sorted(names - exported)}"
    assert 'outcome="dead_lettered"' in " ".join(r["expr"] for r in alert_rules())


# -- checkov ----------------------------------------------------------------------------------------


def test_checkov_finds_no_failed_check_and_every_skip_has_its_reason() -> None:
    if not CHECKOV.exists():
        message = f"checkov is not installed at {CHECKOV}: run `make install-checkov`"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    done = subprocess.run(
        [str(CHECKOV), "-d", str(K8S), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    report = json.loads(done.stdout)
    summary, results = report["summary"], report["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results["failed_checks"]]
    assert not failed, failed
    assert summary["parsing_errors"] == 0
    # checkov passes over a file it cannot parse in silence: every manifest must show up.
    scanned = {Path(c["file_path"]).name for c in results["passed_checks"] + results["skipped_checks"]}
    assert {"deployment.yaml", "migration-job.yaml", "service.yaml", "configmap.yaml"} <= scanned, scanned
    assert summary["passed"] >= 150, summary
    for check in results["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, f"{check['check_id']} on {check['resource']}: skipped without a reason"
    assert done.returncode == 0, done.stderr[-2000:]
