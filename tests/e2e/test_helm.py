"""The Helm chart (deployments/kubernetes/helm/philotes), checked by Helm's own library and the
Kubernetes schemas: rendered with every values file, linted strictly, every object valid for
Kubernetes 1.29 to 1.32 (the operators' objects — KEDA, Prometheus — are checked for what they
must say), and the important values asserted in the rendered objects: the KEDA query, probes,
non-root and read-only pods, NetworkPolicy peers and ports, Vault annotations, the migration
hook. The values schema refuses a wrong type and an unknown key."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

CHART = ROOT / "deployments" / "kubernetes" / "helm" / "philotes"
VALUES = [None, "values.dev.yaml", "values.staging.yaml", "values.prod.yaml"]
KUBE_VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0"]
CRD_KINDS = {"ScaledObject", "ServiceMonitor", "PrometheusRule"}


def helm():
    import helm_python
    return helm_python


def render(values_file=None, extra=None, namespace="data"):
    values = yaml.safe_load((CHART / values_file).read_text()) if values_file else {}
    chart = helm().Chart.load(str(CHART))
    merged = deep_merge(values, extra or {})
    out = chart.render(merged, name="philotes", namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def deep_merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def by_kind(objects, kind):
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_helm_lint_is_clean():
    report = helm().lint(str(CHART), strict=True)
    assert not report["errors"], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("values_file", VALUES, ids=lambda v: v or "defaults")
def test_every_object_is_valid_kubernetes(values_file, tmp_path):
    objects = render(values_file)
    core = [o for o in objects if o["kind"] not in CRD_KINDS]
    assert {"Deployment", "Service", "ConfigMap", "Job", "NetworkPolicy"} <= {o["kind"] for o in core}
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(core))
    validate = Path(sys.executable).parent / "kubernetes-validate"
    for version in KUBE_VERSIONS:
        out = subprocess.run([str(validate), "--strict", "-k", version, str(path)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"Kubernetes {version}: {out.stdout}{out.stderr}"


@pytest.mark.parametrize("values_file", VALUES, ids=lambda v: v or "defaults")
def test_every_pod_runs_non_root_read_only_with_probes(values_file):
    objects = render(values_file)
    pods = [(o["metadata"]["name"], o["spec"]["template"]["spec"]) for o in objects if o["kind"] in ("Deployment", "Job")]
    assert len(pods) == 5, [n for n, _ in pods]
    for name, spec in pods:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
            assert not [e for e in c.get("env", []) if "value" in e and "postgres://" in str(e["value"])], name
            if name.endswith("-migrate"):
                assert c["args"] == ["migrate"]
                continue
            if name.endswith("-dashboard"):
                # The console: its own image; ready when the API answers; nothing but the API's address.
                assert c["image"].startswith("ghcr.io/philotes/philotes-dashboard:"), c["image"]
                assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
                env = {e["name"]: e["value"] for e in c["env"]}
                assert env["PHILOTES_API_URL"] == "http://philotes-api:8080", env
                assert not spec["automountServiceAccountToken"]
                continue
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["PHILOTES_MANAGED"] == "true" and env["PHILOTES_BUFFER_URL_FILE"].endswith("/buffer-url"), env
    deployments = by_kind(objects, "Deployment")
    for d in deployments.values():
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert len(annotations["checksum/config"]) == 64


def test_keda_scales_workers_on_the_buffer_depth_and_an_hpa_stands_in_without_it():
    objects = render("values.prod.yaml")
    (scaled,) = by_kind(objects, "ScaledObject").values()
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == 'sum(max by (pipeline) (philotes_buffer_depth{namespace="data"}))'
    assert trigger["metadata"]["threshold"] == "100000"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"], scaled["spec"]["cooldownPeriod"]) == (2, 6, 600)
    worker = by_kind(objects, "Deployment")["philotes-worker"]
    assert "replicas" not in worker["spec"], "KEDA owns the worker count"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "philotes-worker"
    objects = render(extra={"worker": {"autoscaling": {"keda": {"enabled": False}, "hpa": {"enabled": True}}}})
    assert not by_kind(objects, "ScaledObject")
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "philotes-worker" and hpa["spec"]["maxReplicas"] == 4
    objects = render("values.dev.yaml")
    assert not by_kind(objects, "ScaledObject") and not by_kind(objects, "HorizontalPodAutoscaler")
    assert by_kind(objects, "Deployment")["philotes-worker"]["spec"]["replicas"] == 1


def test_network_policies_allow_only_what_each_role_needs():
    objects = render()
    policies = by_kind(objects, "NetworkPolicy")
    assert set(policies) == {"philotes-ingest", "philotes-worker", "philotes-api", "philotes-dashboard"}

    def egress_ports(p):
        return sorted({port["port"] for rule in p["spec"]["egress"] for port in rule["ports"]})
    # ingest: source + control database (5432), object store (3900), catalog (8181), DNS.
    assert egress_ports(policies["philotes-ingest"]) == [53, 3900, 5432, 8181]
    assert egress_ports(policies["philotes-worker"]) == [53, 3900, 5432, 8181]
    assert egress_ports(policies["philotes-api"]) == [53, 5432]
    worker_peers = [peer for rule in policies["philotes-worker"]["spec"]["egress"] for peer in rule["to"]]
    assert {"ipBlock": {"cidr": "10.0.0.0/8"}} not in worker_peers, "workers never reach the source"
    for name, p in policies.items():
        assert p["spec"]["policyTypes"] == ["Ingress", "Egress"], name
        if name == "philotes-dashboard":
            continue  # no metrics port (below)
        scrape = p["spec"]["ingress"][0]
        assert scrape["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    api_from = policies["philotes-api"]["spec"]["ingress"][1]
    assert api_from["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert len(policies["philotes-worker"]["spec"]["ingress"]) == 1, "nothing but Prometheus reaches a worker"
    # The dashboard: reached from the ingress controller, reaching only the API's pods.
    dash = policies["philotes-dashboard"]["spec"]
    assert egress_ports(policies["philotes-dashboard"]) == [53, 8080]
    assert dash["egress"][1]["to"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "philotes", "app.kubernetes.io/instance": "philotes", "app.kubernetes.io/component": "api"}}}]
    assert dash["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
                                "ports": [{"port": "http", "protocol": "TCP"}]}]
    # The API lets the dashboard's pods in.
    assert api_from["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "dashboard"
    assert not any(p["metadata"]["name"] == "philotes-dashboard"
                   for p in by_kind(render(extra={"dashboard": {"enabled": False}}), "NetworkPolicy").values())


def test_secrets_come_from_a_secret_or_from_vault_never_from_values():
    objects = render()
    ingest = by_kind(objects, "Deployment")["philotes-ingest"]["spec"]["template"]
    volumes = {v["name"]: v for v in ingest["spec"]["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "philotes"
    assert "vault.hashicorp.com/agent-inject" not in ingest["metadata"]["annotations"]
    objects = render("values.prod.yaml")
    ingest = by_kind(objects, "Deployment")["philotes-ingest"]["spec"]["template"]
    a = ingest["metadata"]["annotations"]
    assert a["vault.hashicorp.com/agent-inject"] == "true" and a["vault.hashicorp.com/role"] == "philotes"
    assert a["vault.hashicorp.com/agent-inject-secret-buffer-url"] == "secret/data/philotes/buffer-url"
    assert '{{- with secret "secret/data/philotes/buffer-url" -}}{{ .Data.data.value }}{{- end -}}' in \
        a["vault.hashicorp.com/agent-inject-template-buffer-url"]
    assert "secrets" not in {v["name"] for v in ingest["spec"]["volumes"]}
    env = {e["name"]: e.get("value") for e in ingest["spec"]["containers"][0]["env"]}
    assert env["PHILOTES_BUFFER_URL_FILE"] == "/vault/secrets/buffer-url"
    assert env["PHILOTES_ENCRYPTION_KEY_FILE"] == "/vault/secrets/encryption-key"
    assert ingest["spec"]["automountServiceAccountToken"] is True


def test_migrations_run_as_a_hook_before_install_and_upgrade():
    (job,) = by_kind(render(), "Job").values()
    a = job["metadata"]["annotations"]
    assert a["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "hook-succeeded" in a["helm.sh/hook-delete-policy"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_prometheus_rule_is_the_tested_alert_file():
    chart_copy = (CHART / "files" / "alerts.yml").read_text()
    assert chart_copy == (ROOT / "deployments" / "monitoring" / "alerts.yml").read_text(), \
        "copy deployments/monitoring/alerts.yml to the chart's files/alerts.yml"
    (rule,) = by_kind(render(), "PrometheusRule").values()
    assert rule["spec"] == yaml.safe_load(chart_copy)
    (monitor,) = by_kind(render(), "ServiceMonitor").values()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_the_values_schema_refuses_wrong_types_and_unknown_keys():
    chart = helm().Chart.load(str(CHART))
    for bad in ({"worker": {"replicas": "two"}}, {"workers": {"replicas": 2}},
                {"api": {"port": 70000}}, {"image": {"pullPolicy": "Sometimes"}},
                {"dashboard": {"replicas": -1}}, {"dashboard": {"image": {"registry": "x"}}},
                {"networkPolicy": {"source": {"peers": [], "port": 5432}}}):
        with pytest.raises(Exception) as e:
            chart.render(bad, name="philotes", namespace="data", is_install=True)
        assert "schema" in str(e.value).lower() or "values" in str(e.value).lower(), (bad, e.value)
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
