"""The Helm chart agrees with the code and renders what an SRE expects, for every ci/ scenario.

Helm is built from source into the cache on the first run (about a minute); every render passes
--kube-version because a Helm built with `go install` assumes Kubernetes 1.20 otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tooling.devinfra.tools import ensure_helm
from supportflow.service import DEFAULT_GRPC_PORTS, SERVICES
from supportflow.settings import ENV_PREFIX
from tooling.settings import SERVICE_SETTINGS, FleetSettings

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "supportflow"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.33"
RELEASE = "sf"
COMPONENT_LABEL = "app.kubernetes.io/component"
# Kinds that come from CRDs: no bundled Kubernetes schema knows them.
CRD_API_GROUPS = ("keda.sh/", "monitoring.coreos.com/")
# The chart defaults plus the one value without a default: renders that use no ci/ scenario.
BARE = ("--set", "kafka.bootstrapServers=kafka:9092")
# The agents' workspace: a web application run as `python -m services.workspace.main`, deployed like the services.
WORKSPACE_HTTP_PORT = 8090
COMPONENTS = set(SERVICES) | {"workspace"}


@dataclasses.dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        # Keep Helm's repository cache and config out of the user's home.
        env = dict(
            os.environ,
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_DATA_HOME=str(self.home / "data"),
        )
        return subprocess.run(
            [str(self.binary), *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    def template(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, *args)

    @functools.cache
    def render(self, *args: str) -> "Manifests":
        result = self.template(*args)
        assert result.returncode == 0, f"helm template {' '.join(args)} failed:\n{result.stderr}"
        return Manifests([doc for doc in yaml.safe_load_all(result.stdout) if doc])


@dataclasses.dataclass(frozen=True)
class Manifests:
    docs: list[dict]

    def of_kind(self, kind: str) -> list[dict]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def by_component(self, kind: str) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for doc in self.of_kind(kind):
            component = doc["metadata"]["labels"][COMPONENT_LABEL]
            assert component not in found, f"two {kind}s for {component}"
            found[component] = doc
        return found

    def config(self) -> dict[str, str]:
        (config_map,) = self.of_kind("ConfigMap")
        return config_map["data"]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = ensure_helm(FleetSettings.from_env().cache_dir)
    home = tmp_path_factory.mktemp("helm-home")
    return Helm(binary, home)


def scenario_args(scenario: Path) -> tuple[str, ...]:
    return ("-f", str(scenario))


def enabled_components(scenario: Path) -> set[str]:
    """What the chart should deploy: the chart defaults overlaid with the scenario's switches."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["components"]
    overrides = (yaml.safe_load(scenario.read_text()) or {}).get("components", {})
    return {
        name
        for name, block in defaults.items()
        if overrides.get(name, {}).get("enabled", block["enabled"])
    }


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def pod_labels(manifests: Manifests, component: str) -> dict[str, str]:
    return manifests.by_component("Deployment")[component]["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def test_there_is_a_scenario_per_purpose() -> None:
    names = {path.name for path in SCENARIOS}
    assert {"minimal-values.yaml", "production-values.yaml"} <= names


def test_chart_components_are_the_services_the_code_runs() -> None:
    components = yaml.safe_load((CHART / "values.yaml").read_text())["components"]
    assert set(components) == COMPONENTS
    assert {name: block["grpcPort"] for name, block in components.items() if block["grpcPort"]} == DEFAULT_GRPC_PORTS


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_helm_lint_is_clean(helm: Helm, scenario: Path) -> None:
    result = helm.run("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *scenario_args(scenario))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_one_deployment_and_one_service_per_enabled_component(helm: Helm, scenario: Path) -> None:
    manifests = helm.render(*scenario_args(scenario))
    expected = enabled_components(scenario)
    assert set(manifests.by_component("Deployment")) == expected
    assert set(manifests.by_component("Service")) == expected
    for name, deployment in manifests.by_component("Deployment").items():
        assert deployment["metadata"]["name"] == f"{RELEASE}-supportflow-{name}"
        assert container(deployment)["command"] == ["python", "-m", f"services.{name}.main"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_every_component_has_probes_and_a_metrics_port(helm: Helm, scenario: Path) -> None:
    manifests = helm.render(*scenario_args(scenario))
    services = manifests.by_component("Service")
    for name, deployment in manifests.by_component("Deployment").items():
        main = container(deployment)
        ports = {port["name"]: port["containerPort"] for port in main["ports"]}
        assert ports["metrics"] == 9000, name
        assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, name
        assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, name
        assert main["startupProbe"]["httpGet"]["port"] == "metrics", name
        service_ports = {port["name"]: port for port in services[name]["spec"]["ports"]}
        assert service_ports["metrics"]["targetPort"] == "metrics", name
        assert selects({"matchLabels": services[name]["spec"]["selector"]}, pod_labels(manifests, name))
        grpc_port = DEFAULT_GRPC_PORTS.get(name)
        if grpc_port:
            assert ports["grpc"] == grpc_port and service_ports["grpc"]["port"] == grpc_port, name
        else:
            assert "grpc" not in ports and "grpc" not in service_ports, name
    if "gateway" in services:
        assert {port["name"]: port["port"] for port in services["gateway"]["spec"]["ports"]}["http"] == 8088
    if "workspace" in services:
        assert {port["name"]: port["port"] for port in services["workspace"]["spec"]["ports"]}["http"] == WORKSPACE_HTTP_PORT
        workspace = container(manifests.by_component("Deployment")["workspace"])
        assert {port["name"]: port["containerPort"] for port in workspace["ports"]}["http"] == WORKSPACE_HTTP_PORT


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_pods_meet_the_restricted_security_standard(helm: Helm, scenario: Path) -> None:
    for name, deployment in helm.render(*scenario_args(scenario)).by_component("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        security = container(deployment)["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert "add" not in security["capabilities"], name
        mounts = {mount["mountPath"] for mount in container(deployment)["volumeMounts"]}
        assert {"/tmp", "/var/cache/supportflow"} <= mounts, f"{name} has nowhere to write"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_environment_comes_from_the_shared_config_and_names_real_settings(helm: Helm, scenario: Path) -> None:
    manifests = helm.render(*scenario_args(scenario))
    config_name = manifests.of_kind("ConfigMap")[0]["metadata"]["name"]
    def variables(settings_class: type) -> set[str]:
        return {ENV_PREFIX + name.upper() for name in settings_class.model_fields}

    read_by_some_service = set().union(*(variables(c) for c in SERVICE_SETTINGS.values()))
    for name in manifests.config():
        assert name in read_by_some_service, f"ConfigMap sets {name}, which no service's settings read"
    for name, deployment in manifests.by_component("Deployment").items():
        main = container(deployment)
        assert {"configMapRef": {"name": config_name}} in main["envFrom"], name
        env = {item["name"]: item.get("value", item.get("valueFrom")) for item in main["env"]}
        for variable in env:
            if variable.startswith(ENV_PREFIX):
                assert variable in variables(SERVICE_SETTINGS[name]), f"{name} sets {variable}, which its settings do not read"
        if name in DEFAULT_GRPC_PORTS:
            assert env["SUPPORTFLOW_GRPC_PORT"] == str(DEFAULT_GRPC_PORTS[name])
        assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_grpc_addresses_point_at_the_services(helm: Helm) -> None:
    manifests = helm.render(*BARE)
    config = manifests.config()
    services = manifests.by_component("Service")
    components = yaml.safe_load((CHART / "values.yaml").read_text())["components"]
    called = {callee for component in components.values() for callee in component.get("calls") or []}
    for name, port in DEFAULT_GRPC_PORTS.items():
        if name in called:
            assert config[f"SUPPORTFLOW_{name.upper()}_ADDR"] == f"{services[name]['metadata']['name']}:{port}"
        else:  # no caller, no setting that reads it
            assert f"SUPPORTFLOW_{name.upper()}_ADDR" not in config


def test_config_change_rolls_the_pods(helm: Helm) -> None:
    before = helm.render(*BARE).by_component("Deployment")
    after = helm.render(*BARE, "--set", "config.logLevel=DEBUG").by_component("Deployment")
    for name in before:
        checksum = "checksum/config"
        assert (
            before[name]["spec"]["template"]["metadata"]["annotations"][checksum]
            != after[name]["spec"]["template"]["metadata"]["annotations"][checksum]
        ), name


@pytest.mark.parametrize(
    "typo",
    ["components.drafter.replicaz=3", "default.autoscaling.enabeld=true", "kafka.bootstrapServer=x:9092", "nope=1"],
)
def test_a_values_typo_fails_the_render(helm: Helm, typo: str) -> None:
    result = helm.template(*BARE, "--set", typo)
    assert result.returncode != 0
    misspelt = typo.split("=")[0].rsplit(".", 1)[-1]
    assert "schema" in result.stderr and misspelt in result.stderr, result.stderr


def test_a_wrongly_typed_value_fails_the_render(helm: Helm) -> None:
    result = helm.template(*BARE, "--set", "components.retriever.grpcPort=not-a-port")
    assert result.returncode != 0 and "schema" in result.stderr


def test_missing_bootstrap_servers_fails_with_a_clear_message(helm: Helm) -> None:
    result = helm.template()
    assert result.returncode != 0
    assert "kafka.bootstrapServers is required" in result.stderr


def test_disabling_a_component_removes_its_objects(helm: Helm) -> None:
    full = helm.render(*BARE)
    without = helm.render(*BARE, "--set", "components.learner.enabled=false", "--set", "components.workspace.calls={drafter}")
    learner_objects = [doc for doc in full.docs if doc["metadata"].get("labels", {}).get(COMPONENT_LABEL) == "learner"]
    assert {doc["kind"] for doc in learner_objects} >= {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}
    assert not [doc for doc in without.docs if doc["metadata"].get("labels", {}).get(COMPONENT_LABEL) == "learner"]
    assert "SUPPORTFLOW_LEARNER_ADDR" not in without.config()
    assert len(without.docs) == len(full.docs) - len(learner_objects)


def test_disabling_a_component_another_calls_fails_clearly(helm: Helm) -> None:
    result = helm.template(*BARE, "--set", "components.retriever.enabled=false")
    assert result.returncode != 0
    assert "components.drafter calls retriever" in result.stderr


def test_autoscaling_and_keda_on_one_component_fail(helm: Helm) -> None:
    result = helm.template(
        *BARE, "--set", "components.drafter.autoscaling.enabled=true", "--set", "components.drafter.keda.enabled=true"
    )
    assert result.returncode != 0 and "not both" in result.stderr


def test_the_escalator_scales_like_the_other_stages(helm: Helm) -> None:
    manifests = helm.render(*BARE, "--set", "components.escalator.replicas=3")
    deployment = manifests.by_component("Deployment")["escalator"]
    assert deployment["spec"]["replicas"] == 3
    assert "escalator" in manifests.by_component("PodDisruptionBudget")
    scaled = helm.render(*BARE, "--set", "components.escalator.keda.enabled=true", "--set", "kafka.topicPrefix=prod.")
    (trigger,) = scaled.by_component("ScaledObject")["escalator"]["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == "prod.escalator"  # the faust app's id is its consumer group
    assert "replicas" not in scaled.by_component("Deployment")["escalator"]["spec"]
    hpa = helm.render(*BARE, "--set", "components.escalator.autoscaling.enabled=true")
    assert "escalator" in hpa.by_component("HorizontalPodAutoscaler")


def test_the_escalators_tables_get_a_volume_of_their_own_with_rocksdb(helm: Helm) -> None:
    manifests = helm.render(*BARE, "--set", "config.escalatorTables.volumeSizeLimit=5Gi",
                            "--set", "config.escalatorTables.standbyReplicas=1")
    config = manifests.config()
    assert config["SUPPORTFLOW_ESCALATOR_TABLE_STORE"] == "rocksdb://"
    assert config["SUPPORTFLOW_ESCALATOR_STANDBY_REPLICAS"] == "1"
    deployments = manifests.by_component("Deployment")
    pod = deployments["escalator"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tables"]
    assert volume["emptyDir"] == {"sizeLimit": "5Gi"}
    (mount,) = [m for m in container(deployments["escalator"])["volumeMounts"] if m["name"] == "tables"]
    assert mount["mountPath"] == config["SUPPORTFLOW_ESCALATOR_TABLE_DIR"]
    for name, other in deployments.items():  # only the escalator keeps tables
        if name != "escalator":
            assert "tables" not in {v["name"] for v in other["spec"]["template"]["spec"]["volumes"]}

    in_memory = helm.render(*BARE, "--set", "config.escalatorTables.store=memory")
    assert in_memory.config()["SUPPORTFLOW_ESCALATOR_TABLE_STORE"] == "memory://"
    assert "SUPPORTFLOW_ESCALATOR_TABLE_DIR" not in in_memory.config()
    escalator_pod = in_memory.by_component("Deployment")["escalator"]["spec"]["template"]["spec"]
    assert "tables" not in {v["name"] for v in escalator_pod["volumes"]}
    typo = helm.template(*BARE, "--set", "config.escalatorTables.store=redis")
    assert typo.returncode != 0


def _grpc_peers(policy: dict) -> list[dict]:
    rules = policy["spec"].get("ingress", [])
    grpc = {"port": "grpc", "protocol": "TCP"}
    return [peer for rule in rules if grpc in rule.get("ports", []) for peer in rule.get("from", [])]


def test_the_charts_call_graph_is_the_codes() -> None:
    """Each component's `calls` are exactly the services whose address (settings.<name>_addr) its
    code reads: a missing one is a call the NetworkPolicy blocks, an extra one a hole in it."""
    services = CHART.parents[2] / "services"
    for name, component in yaml.safe_load((CHART / "values.yaml").read_text())["components"].items():
        code = "\n".join(path.read_text() for path in (services / name).rglob("*.py"))
        assert set(re.findall(r"settings\.([a-z]+)_addr\b", code)) == set(component.get("calls") or []), name


def test_network_policy_follows_the_call_graph(helm: Helm) -> None:
    manifests = helm.render(*BARE)
    policies = manifests.by_component("NetworkPolicy")
    assert set(policies) == COMPONENTS

    def callers_of(component: str) -> set[str]:
        return {
            name
            for peer in _grpc_peers(policies[component])
            for name in COMPONENTS
            if "podSelector" in peer and selects(peer["podSelector"], pod_labels(manifests, name))
        }

    assert callers_of("retriever") == {"drafter", "escalator"}  # Search; SimilarCases for packets
    assert callers_of("classifier") == set()  # Classifier.Classify serves callers outside the chart
    assert callers_of("drafter") == {"workspace"}  # a new draft
    assert callers_of("learner") == {"workspace", "learner"}  # KPIs; a replica asks the one holding a tenant's shard
    learner_egress = policies["learner"]["spec"]["egress"]
    assert [rule["ports"] for rule in learner_egress
            if any(selects(peer.get("podSelector", {}), pod_labels(manifests, "learner")) for peer in rule.get("to", []))
            ] == [[{"port": 50065, "protocol": "TCP"}]]
    learner_env = {item["name"]: item for item in container(manifests.by_component("Deployment")["learner"])["env"]}
    assert learner_env["SUPPORTFLOW_LEARNER_ADVERTISED_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert callers_of("delivery") == set()
    assert callers_of("workspace") == set()

    drafter_egress = policies["drafter"]["spec"]["egress"]
    to_retriever = [
        rule
        for rule in drafter_egress
        if any(selects(peer.get("podSelector", {}), pod_labels(manifests, "retriever")) for peer in rule.get("to", []))
    ]
    assert [rule["ports"] for rule in to_retriever] == [[{"port": 50062, "protocol": "TCP"}]]

    weaviate_port = {"port": 8080, "protocol": "TCP"}
    reaches_weaviate = {
        name
        for name, policy in policies.items()
        if any(weaviate_port in rule.get("ports", []) for rule in policy["spec"]["egress"])
    }
    assert reaches_weaviate == {"retriever"}
    for name, policy in policies.items():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert selects(policy["spec"]["podSelector"], pod_labels(manifests, name))
        ingress_ports = [port for rule in policy["spec"]["ingress"] for port in rule.get("ports", [])]
        egress_ports = [port for rule in policy["spec"]["egress"] for port in rule.get("ports", [])]
        assert {"port": "metrics", "protocol": "TCP"} in ingress_ports, name
        assert {"port": 9092, "protocol": "TCP"} in egress_ports, name


def test_only_delivery_reaches_the_channels(helm: Helm) -> None:
    """Delivery posts to helpdesks, mail servers and callback URLs anywhere: HTTPS and SMTP egress
    to any destination, for delivery alone; it calls no component and none calls it."""
    manifests = helm.render(*BARE)
    policies = manifests.by_component("NetworkPolicy")
    smtp = {"port": 587, "protocol": "TCP"}
    reaches_mail = {
        name for name, policy in policies.items() if any(smtp in rule.get("ports", []) for rule in policy["spec"]["egress"])
    }
    assert reaches_mail == {"delivery"}
    (channels_rule,) = [rule for rule in policies["delivery"]["spec"]["egress"] if smtp in rule["ports"]]
    assert {"port": 443, "protocol": "TCP"} in channels_rule["ports"] and "to" not in channels_rule
    assert not any("podSelector" in peer for rule in policies["delivery"]["spec"]["egress"] for peer in rule.get("to", []))
    assert _grpc_peers(policies["delivery"]) == []
    narrowed = helm.render(*BARE, "--set", "channels.networkPolicy.to[0].ipBlock.cidr=0.0.0.0/0",
                           "--set", "channels.networkPolicy.ports={443}")
    (rule,) = [r for r in narrowed.by_component("NetworkPolicy")["delivery"]["spec"]["egress"]
               if {"port": 443, "protocol": "TCP"} in r["ports"]]
    assert rule == {"ports": [{"port": 443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}


def test_the_channels_file_is_mounted_read_only_where_it_is_read(helm: Helm) -> None:
    assert all("SUPPORTFLOW_CHANNELS_PATH" not in {e["name"] for e in container(d)["env"]}
               for d in helm.render(*BARE).by_component("Deployment").values())
    deployments = helm.render(*BARE, "--set", "channels.existingSecret=tenant-channels").by_component("Deployment")
    readers = set()
    for name, deployment in deployments.items():
        env = {item["name"]: item.get("value", item.get("valueFrom")) for item in container(deployment)["env"]}
        if "SUPPORTFLOW_CHANNELS_PATH" not in env:
            continue
        readers.add(name)
        path = Path(env["SUPPORTFLOW_CHANNELS_PATH"])
        (mount,) = [m for m in container(deployment)["volumeMounts"] if m["name"] == "channels"]
        assert mount["readOnly"] is True and Path(mount["mountPath"]) == path.parent
        (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "channels"]
        assert volume["secret"]["secretName"] == "tenant-channels"
        assert volume["secret"]["items"] == [{"key": "channels.yaml", "path": path.name}]
    assert readers == {"gateway", "delivery"}


def test_the_gateway_listens_for_mail_when_asked(helm: Helm) -> None:
    def smtp_ports(manifests: Manifests) -> tuple[list, list, list]:
        gateway = manifests.by_component("Deployment")["gateway"]
        service = manifests.by_component("Service")["gateway"]
        policy = manifests.by_component("NetworkPolicy")["gateway"]
        return ([p for p in container(gateway)["ports"] if p["name"] == "smtp"],
                [p for p in service["spec"]["ports"] if p["name"] == "smtp"],
                [r for r in policy["spec"]["ingress"] if {"port": "smtp", "protocol": "TCP"} in r.get("ports", [])])

    off = helm.render(*BARE)
    assert smtp_ports(off) == ([], [], []) and "SUPPORTFLOW_GATEWAY_SMTP_PORT" not in off.config()
    on = helm.render(*BARE, "--set", "config.gatewaySmtpPort=2525")
    container_ports, service_ports, ingress = smtp_ports(on)
    assert container_ports == [{"name": "smtp", "containerPort": 2525, "protocol": "TCP"}]
    assert service_ports == [{"name": "smtp", "port": 2525, "targetPort": "smtp", "protocol": "TCP"}]
    assert ingress == [{"ports": [{"port": "smtp", "protocol": "TCP"}]}]  # mail servers forward from outside
    assert on.config()["SUPPORTFLOW_GATEWAY_SMTP_PORT"] == "2525"
    for name, deployment in on.by_component("Deployment").items():
        if name != "gateway":
            assert "smtp" not in {p["name"] for p in container(deployment)["ports"]}, name


def test_the_delivery_ledger_url_comes_from_values(helm: Helm) -> None:
    assert "SUPPORTFLOW_DELIVERY_LEDGER_URL" not in helm.render(*BARE).config()
    url = "postgresql+psycopg://supportflow@ledger-db/supportflow"
    assert helm.render(*BARE, "--set", f"config.deliveryLedgerUrl={url}").config()["SUPPORTFLOW_DELIVERY_LEDGER_URL"] == url


def test_delivery_scales_out_only_with_a_shared_ledger(helm: Helm) -> None:
    result = helm.template(*BARE, "--set", "components.delivery.replicas=3")
    assert result.returncode != 0 and "components.delivery runs more than one replica" in result.stderr
    url = "postgresql+psycopg://supportflow@ledger-db/supportflow"
    scaled = helm.render(*BARE, "--set", "components.delivery.replicas=3", "--set", f"config.deliveryLedgerUrl={url}")
    assert scaled.by_component("Deployment")["delivery"]["spec"]["replicas"] == 3


# --- the workspace -------------------------------------------------------------------------------


def _egress_ports(policy: dict) -> list[dict]:
    return [port for rule in policy["spec"]["egress"] for port in rule.get("ports", [])]


def test_the_workspace_serves_http_and_is_ready_on_the_ops_port(helm: Helm) -> None:
    manifests = helm.render(*BARE)
    deployment = manifests.by_component("Deployment")["workspace"]
    main = container(deployment)
    assert container(deployment)["command"] == ["python", "-m", "services.workspace.main"]
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"http": WORKSPACE_HTTP_PORT, "metrics": 9000}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    service_ports = manifests.by_component("Service")["workspace"]["spec"]["ports"]
    assert {"name": "http", "port": WORKSPACE_HTTP_PORT, "targetPort": "http", "protocol": "TCP"} in service_ports
    config = manifests.config()
    assert config["SUPPORTFLOW_WORKSPACE_HTTP_PORT"] == str(WORKSPACE_HTTP_PORT)
    assert "SUPPORTFLOW_WORKSPACE_DB_URL" not in config  # the pod's own SQLite file
    assert "SUPPORTFLOW_GATEWAY_HTTP_PORT" not in {e["name"] for e in main["env"]}
    assert deployment["spec"]["replicas"] == 1

    moved = helm.render(*BARE, "--set", "config.workspaceHttpPort=8443")
    assert [p["containerPort"] for p in container(moved.by_component("Deployment")["workspace"])["ports"]
            if p["name"] == "http"] == [8443]
    assert [p["port"] for p in moved.by_component("Service")["workspace"]["spec"]["ports"] if p["name"] == "http"] == [8443]
    assert moved.config()["SUPPORTFLOW_WORKSPACE_HTTP_PORT"] == "8443"
    url = "postgresql+psycopg://workspace@workspace-db/workspace"
    assert helm.render(*BARE, "--set", f"config.workspaceDbUrl={url}").config()["SUPPORTFLOW_WORKSPACE_DB_URL"] == url

    result = helm.template(*BARE, "--set", "components.workspace.httpPort=8091")
    assert result.returncode != 0 and "config.workspaceHttpPort" in result.stderr


def test_the_workspace_network_policy_opens_its_port_and_reaches_kafka_and_its_database(helm: Helm) -> None:
    manifests = helm.render(*BARE)
    policies = manifests.by_component("NetworkPolicy")
    policy = policies["workspace"]
    # Agents' browsers and API clients, from any source (an ingress controller's peers narrow it).
    assert {"ports": [{"port": "http", "protocol": "TCP"}]} in policy["spec"]["ingress"]
    assert _grpc_peers(policy) == []
    egress = _egress_ports(policy)
    assert {"port": 9092, "protocol": "TCP"} in egress and {"port": 5432, "protocol": "TCP"} in egress
    assert {"port": 8080, "protocol": "TCP"} not in egress and {"port": 587, "protocol": "TCP"} not in egress
    # gRPC to the drafter (an agent's new draft) and the learner (the KPI panel), and to no other pod.
    to_pods = [rule["ports"] for rule in policy["spec"]["egress"] if any("podSelector" in peer for peer in rule.get("to", []))]
    assert sorted(port["port"] for ports in to_pods for port in ports) == [DEFAULT_GRPC_PORTS["drafter"],
                                                                          DEFAULT_GRPC_PORTS["learner"]]
    # Nothing else serves an http port to any source but the gateway's intake and the workspace.
    open_http = {name for name, p in policies.items() if {"ports": [{"port": "http", "protocol": "TCP"}]} in p["spec"]["ingress"]}
    assert open_http == {"gateway", "workspace"}
    # The databases: the workspace's state and the delivery ledger.
    database_port = {"port": 5432, "protocol": "TCP"}
    assert {name for name, p in policies.items() if database_port in _egress_ports(p)} == {"delivery", "workspace"}

    narrowed = helm.render(*BARE, "--set", "database.networkPolicy.to[0].ipBlock.cidr=10.30.0.0/24")
    (rule,) = [r for r in narrowed.by_component("NetworkPolicy")["workspace"]["spec"]["egress"]
               if database_port in r["ports"]]
    assert rule == {"ports": [database_port], "to": [{"ipBlock": {"cidr": "10.30.0.0/24"}}]}


@pytest.mark.parametrize(
    "setting", ["components.workspace.replicas=2", "components.workspace.autoscaling.enabled=true"],
)
def test_the_workspace_scales_out_only_with_a_shared_database(helm: Helm, setting: str) -> None:
    result = helm.template(*BARE, "--set", setting)
    assert result.returncode != 0 and "components.workspace runs more than one replica" in result.stderr
    assert "SUPPORTFLOW_WORKSPACE_SESSION_SECRET" in result.stderr
    url = "postgresql+psycopg://workspace@workspace-db/workspace"
    for shared in (("--set", f"config.workspaceDbUrl={url}"), ("--set", "secrets.existingSecret=supportflow-secrets")):
        assert helm.template(*BARE, "--set", setting, *shared).returncode == 0
    scaled = helm.render(*BARE, "--set", "components.workspace.replicas=2", "--set", f"config.workspaceDbUrl={url}")
    assert scaled.by_component("Deployment")["workspace"]["spec"]["replicas"] == 2


def test_disabling_the_workspace_removes_it_and_its_settings(helm: Helm) -> None:
    without = helm.render(*BARE, "--set", "components.workspace.enabled=false",
                          "--set", "config.workspaceDbUrl=postgresql+psycopg://w@db/w")
    assert not [doc for doc in without.docs if doc["metadata"].get("labels", {}).get(COMPONENT_LABEL) == "workspace"]
    assert not [name for name in without.config() if name.startswith("SUPPORTFLOW_WORKSPACE_")]


def test_production_scenario_narrows_the_workspace_to_the_ingress_controller(helm: Helm) -> None:
    manifests = helm.render(*scenario_args(CHART / "ci" / "production-values.yaml"))
    assert manifests.by_component("Deployment")["workspace"]["spec"]["replicas"] == 2
    policy = manifests.by_component("NetworkPolicy")["workspace"]
    http_rules = [rule for rule in policy["spec"]["ingress"] if {"port": "http", "protocol": "TCP"} in rule["ports"]]
    assert http_rules == [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
                           "ports": [{"port": "http", "protocol": "TCP"}]}]
    assert {"port": 9096, "protocol": "TCP"} in _egress_ports(policy)
    (database,) = [rule for rule in policy["spec"]["egress"] if {"port": 5432, "protocol": "TCP"} in rule["ports"]]
    assert database["to"] == [{"ipBlock": {"cidr": "10.30.0.0/24"}}]


def test_production_scenario_autoscales_monitors_and_authenticates(helm: Helm) -> None:
    manifests = helm.render(*scenario_args(CHART / "ci" / "production-values.yaml"))
    deployments = manifests.by_component("Deployment")
    hpas = manifests.by_component("HorizontalPodAutoscaler")
    scaled = manifests.by_component("ScaledObject")
    assert set(hpas) == {"gateway"}
    assert set(scaled) == {"classifier", "retriever", "drafter", "escalator"}
    for name, deployment in deployments.items():
        autoscaled = name in hpas or name in scaled
        assert ("replicas" in deployment["spec"]) != autoscaled, f"{name}: replicas must be left to the autoscaler"
    assert hpas["gateway"]["spec"]["scaleTargetRef"]["name"] == deployments["gateway"]["metadata"]["name"]

    (auth,) = manifests.of_kind("TriggerAuthentication")
    for name, scaled_object in scaled.items():
        assert scaled_object["spec"]["scaleTargetRef"]["name"] == deployments[name]["metadata"]["name"]
        (trigger,) = scaled_object["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == f"prod.{name}"  # the group ConsumerLoop (or the faust app) joins
        assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"password", "ca"}

    monitors = manifests.by_component("ServiceMonitor")
    assert set(monitors) == set(deployments)
    for name, monitor in monitors.items():
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    config = manifests.config()
    assert config["SUPPORTFLOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["SUPPORTFLOW_KAFKA_SSL_CA_LOCATION"] == "/etc/supportflow/kafka-ca/ca.crt"
    for deployment in deployments.values():
        assert {"secretRef": {"name": "supportflow-secrets"}} in container(deployment)["envFrom"]
    assert "SUPPORTFLOW_KAFKA_SASL_PASSWORD" not in config  # secrets never land in the ConfigMap
    assert {"escalator", "learner"} <= set(manifests.by_component("PodDisruptionBudget"))
    assert deployments["learner"]["spec"]["replicas"] == 2


def test_the_alert_rules_render_as_a_prometheus_rule_when_asked(helm: Helm) -> None:
    assert helm.render(*BARE).of_kind("PrometheusRule") == []
    (rule,) = helm.render(*scenario_args(CHART / "ci" / "production-values.yaml")).of_kind("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # The promtool-tested file itself, with Prometheus's own {{ $labels }} templates left alone.
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "supportflow-rules.yaml").read_text())
    summaries = [r["annotations"]["summary"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert any("{{ $labels.service }}" in summary for summary in summaries)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_pod_disruption_budgets_select_their_pods(helm: Helm, scenario: Path) -> None:
    manifests = helm.render(*scenario_args(scenario))
    for name, budget in manifests.by_component("PodDisruptionBudget").items():
        assert selects(budget["spec"]["selector"], pod_labels(manifests, name))
        assert not any(
            selects(budget["spec"]["selector"], pod_labels(manifests, other))
            for other in manifests.by_component("Deployment")
            if other != name
        )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_manifests_validate_against_kubernetes_schemas(helm: Helm, scenario: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    manifests = helm.render(*scenario_args(scenario))
    native = [doc for doc in manifests.docs if not doc["apiVersion"].startswith(CRD_API_GROUPS)]
    assert {"Deployment", "Service", "ConfigMap"} <= {doc["kind"] for doc in native}
    problems = []
    for doc in native:
        try:
            kubernetes_validate.validate(doc, f"{KUBE_VERSION}.0", strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}")
    assert not problems, "\n".join(problems)


# --- the investigator ----------------------------------------------------------------------------


def test_the_investigator_is_called_by_the_drafter_and_escalator_and_reaches_the_tenants_systems(helm: Helm) -> None:
    manifests = helm.render(*BARE)
    policies = manifests.by_component("NetworkPolicy")
    callers = {name for peer in _grpc_peers(policies["investigator"]) for name in COMPONENTS
               if "podSelector" in peer and selects(peer["podSelector"], pod_labels(manifests, name))}
    assert callers == {"drafter", "escalator"}
    assert _grpc_peers(policies["investigator"]) and not any(
        "podSelector" in peer for rule in policies["investigator"]["spec"]["egress"] for peer in rule.get("to", []))
    https = {"port": 443, "protocol": "TCP"}
    assert {name for name, policy in policies.items() if https in _egress_ports(policy)} >= {"investigator"}
    (systems_rule,) = [r for r in policies["investigator"]["spec"]["egress"] if https in r["ports"]]
    assert "to" not in systems_rule  # any destination until systems.networkPolicy.to narrows it
    assert manifests.config()["SUPPORTFLOW_INVESTIGATOR_ADDR"] == f"{RELEASE}-supportflow-investigator:50066"
    without = helm.template(*BARE, "--set", "components.investigator.enabled=false")
    assert without.returncode != 0 and "calls investigator" in without.stderr


def test_the_systems_file_is_mounted_read_only_into_the_investigator_only(helm: Helm) -> None:
    assert all("SUPPORTFLOW_SYSTEMS_PATH" not in {e["name"] for e in container(d)["env"]}
               for d in helm.render(*BARE).by_component("Deployment").values())
    manifests = helm.render(*scenario_args(CHART / "ci" / "production-values.yaml"))
    readers = set()
    for name, deployment in manifests.by_component("Deployment").items():
        env = {item["name"]: item.get("value", item.get("valueFrom")) for item in container(deployment)["env"]}
        if "SUPPORTFLOW_SYSTEMS_PATH" not in env:
            continue
        readers.add(name)
        path = Path(env["SUPPORTFLOW_SYSTEMS_PATH"])
        (mount,) = [m for m in container(deployment)["volumeMounts"] if m["name"] == "systems"]
        assert mount["readOnly"] is True and Path(mount["mountPath"]) == path.parent
        (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "systems"]
        assert volume["secret"]["secretName"] == "supportflow-systems"
        assert volume["secret"]["items"] == [{"key": "systems.yaml", "path": path.name}]
    assert readers == {"investigator"}
    (rule,) = [r for r in manifests.by_component("NetworkPolicy")["investigator"]["spec"]["egress"]
               if {"port": 443, "protocol": "TCP"} in r["ports"]]
    assert rule["to"] == [{"ipBlock": {"cidr": "10.40.0.0/16"}}]
