"""The Helm charts (deployments/kubernetes/helm): the `philotes` umbrella over philotes-worker,
philotes-api and philotes-dashboard (with the philotes-common library), and the optional
control database (CloudNativePG) and S3 server (SeaweedFS). Checked by Helm's own library and
by schemas nobody here wrote: the local dependencies packed as `helm dependency update` packs
them, rendered with every values file, linted strictly, every core object valid for Kubernetes
1.29 to 1.32, and every custom resource (KEDA, Prometheus operator, cert-manager, CloudNativePG)
valid against its project's CRD schema kept in deployments/kubernetes/crds — strictly: a key
the schema does not know fails. The important values are asserted in the rendered objects: the
KEDA query, probes, non-root and read-only pods, NetworkPolicy peers and ports, Vault
annotations, the migration hook. The values schemas refuse a wrong type and an unknown key."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

HELM = ROOT / "deployments" / "kubernetes" / "helm"
CHART = HELM / "philotes"
CRDS = ROOT / "deployments" / "kubernetes" / "crds"
SUBCHARTS = ["philotes-worker", "philotes-api", "philotes-dashboard", "philotes-postgresql", "philotes-objectstore"]
VALUES = [None, "values.dev.yaml", "values.staging.yaml", "values.prod.yaml"]
KUBE_VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0"]
CRD_KINDS = {"ScaledObject", "ServiceMonitor", "PrometheusRule", "Cluster", "ClusterIssuer"}


def helm():
    import helm_python
    return helm_python


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A copy of the charts with their file:// dependencies packed into charts/, in the order
    deployments/scripts/helm-deps.sh runs `helm dependency update`."""
    out = tmp_path_factory.mktemp("helm")
    for chart in HELM.iterdir():
        shutil.copytree(chart, out / chart.name, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    script = (ROOT / "deployments" / "scripts" / "helm-deps.sh").read_text()
    order = script.split("for chart in ", 1)[1].split(";", 1)[0].split()
    assert order == SUBCHARTS + ["philotes"]
    for chart in order:
        helm().dependency_update(str(out / chart))
    packed = {d["name"]: d["status"] for d in helm().dependency_list(str(out / "philotes"))}
    assert packed == {"philotes-common": "ok", **{c: "ok" for c in SUBCHARTS}}, packed
    return out / "philotes"


def render(built, values_file=None, extra=None, namespace="data"):
    values = yaml.safe_load((CHART / values_file).read_text()) if values_file else {}
    chart = helm().Chart.load(str(built))
    out = chart.render(deep_merge(values, extra or {}), name="philotes", namespace=namespace, is_install=True)
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


# --- custom resources against their projects' schemas -------------------------------------

def strict(schema):
    """A CRD's structural schema as the API server applies it with strict field validation:
    an object that lists its properties takes no others (unless it says it keeps unknown
    fields); an int-or-string is either."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if out.get("type") == "object" and "properties" in out and "metadata" in out["properties"] \
            and "apiVersion" in out["properties"]:
        out["properties"]["metadata"] = {"type": "object"}  # checked by the API server itself
    return out


def crd_validator(obj):
    from jsonschema import Draft7Validator
    group_version = obj["apiVersion"].replace("/", "_")
    path = CRDS / f"{group_version.split('_')[0]}_{obj['kind']}_{group_version.split('_')[1]}.json"
    assert path.exists(), f"no schema for {obj['apiVersion']} {obj['kind']}: add its CRD with crds/extract.py"
    kept = json.loads(path.read_text())
    assert (kept["apiVersion"], kept["kind"]) == (obj["apiVersion"], obj["kind"])
    return Draft7Validator(strict(kept["schema"]))


def crd_errors(obj):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator(obj).iter_errors(obj)]


# --- the tests ------------------------------------------------------------------------------

def test_the_umbrella_takes_its_subcharts_from_beside_it_with_conditions():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    deps = {d["name"]: d for d in chart["dependencies"]}
    assert set(deps) == {"philotes-common", *SUBCHARTS}
    for name, d in deps.items():
        assert d["repository"] == f"file://../{name}", d
        assert yaml.safe_load((HELM / name / "Chart.yaml").read_text())["version"] == d["version"]
    assert deps["philotes-postgresql"]["condition"] == "philotes-postgresql.enabled"
    assert deps["philotes-objectstore"]["condition"] == "philotes-objectstore.enabled"
    assert deps["philotes-dashboard"]["condition"] == "philotes-dashboard.enabled"
    assert yaml.safe_load((HELM / "philotes-common" / "Chart.yaml").read_text())["type"] == "library"
    for name in SUBCHARTS + ["philotes"]:
        assert (HELM / name / "values.schema.json").exists(), name


@pytest.mark.parametrize("values_file", VALUES, ids=lambda v: v or "defaults")
def test_helm_lint_is_clean(built, values_file):
    """The umbrella, and each subchart on its own with the umbrella's `global` and its section."""
    values = yaml.safe_load((CHART / values_file).read_text()) if values_file else {}
    report = helm().lint(str(built), values, strict=True, namespace="data")
    assert not report["errors"], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report
    merged = deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), values)
    for name in SUBCHARTS:
        section = merged.get(name, {})
        if section.get("enabled") is False:
            continue
        sub = {"global": merged["global"], **section}
        report = helm().lint(str(built.parent / name), sub, strict=True, namespace="data")
        assert not report["errors"], (name, report)
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], (name, report)


@pytest.mark.parametrize("values_file", VALUES, ids=lambda v: v or "defaults")
def test_every_object_is_valid_kubernetes(built, values_file, tmp_path):
    objects = render(built, values_file)
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
def test_every_custom_resource_is_valid_for_its_operator(built, values_file):
    objects = [o for o in render(built, values_file) if o["kind"] in CRD_KINDS]
    kinds = {o["kind"] for o in objects}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    if values_file in (None, "values.staging.yaml", "values.prod.yaml"):
        assert "ScaledObject" in kinds
    if values_file in ("values.dev.yaml", "values.staging.yaml", "values.prod.yaml"):
        assert "Cluster" in kinds
    for obj in objects:
        assert crd_errors(obj) == [], (obj["kind"], obj["metadata"]["name"])


def test_the_crd_check_refuses_what_an_operator_would():
    """The check above is only worth something if it fails: a misspelt key, a wrong type and a
    missing required field in each kind are refused."""
    scaled = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "w"},
              "spec": {"scaleTargetRef": {"name": "w"}, "triggers": [{"type": "prometheus", "metadata": {"query": "x"}}]}}
    assert crd_errors(scaled) == []
    assert crd_errors(deep_merge(scaled, {"spec": {"minReplicas": 1}})), "KEDA's key is minReplicaCount"
    assert crd_errors(deep_merge(scaled, {"spec": {"cooldownPeriod": "300"}}))
    assert crd_errors({**scaled, "spec": {"triggers": scaled["spec"]["triggers"]}}), "scaleTargetRef is required"
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"},
               "spec": {"selector": {}, "endpoints": [{"port": "metrics", "intervall": "15s"}]}}
    assert crd_errors(monitor)
    issuers = list(yaml.safe_load_all((ROOT / "deployments" / "kubernetes" / "examples" / "cluster-issuer.yaml").read_text()))
    assert [i["metadata"]["name"] for i in issuers] == ["letsencrypt", "letsencrypt-staging"]
    for issuer in issuers:
        assert crd_errors(issuer) == [], issuer["metadata"]["name"]
    assert crd_errors(deep_merge(issuers[0], {"spec": {"acme": {"privateKeySecretRef": {"name": 1}}}}))
    cluster = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "c"},
               "spec": {"instances": 1, "storage": {"size": "1Gi"}, "bootstrap": {"initdb": {"database": "d", "owner": "d", "encoding": 8}}}}
    assert crd_errors(cluster)


@pytest.mark.parametrize("values_file", VALUES, ids=lambda v: v or "defaults")
def test_every_pod_runs_non_root_read_only_with_probes(built, values_file):
    objects = render(built, values_file)
    pods = [(o["metadata"]["name"], o["spec"]["template"]["spec"]) for o in objects
            if o["kind"] in ("Deployment", "Job", "StatefulSet")]
    names = {n for n, _ in pods}
    assert {"philotes-ingest", "philotes-worker", "philotes-api", "philotes-dashboard", "philotes-migrate"} <= names
    assert ("philotes-objectstore" in names) == (values_file == "values.dev.yaml")
    for name, spec in pods:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
            assert not [e for e in c.get("env", []) if "value" in e and "postgres" in str(e["value"]) and "://" in str(e["value"])], name
            assert not [e for e in c.get("env", []) if "valueFrom" in e], f"{name}: secrets are files, not environment values"
        c = spec["containers"][0]
        if name.endswith("-migrate"):
            assert c["args"] == ["migrate"]
            continue
        if name.startswith("philotes-objectstore"):
            if name == "philotes-objectstore":
                assert c["image"] == "chrislusf/seaweedfs:3.97" and c["readinessProbe"]["httpGet"]["path"] == "/healthz"
            continue
        if name.endswith("-dashboard"):
            # The console: its own image; ready when the API answers; nothing but the API's address.
            assert c["image"].startswith("ghcr.io/philotes/philotes-dashboard:"), c["image"]
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            env = {e["name"]: e["value"] for e in c["env"]}
            assert env["PHILOTES_API_URL"] == "http://philotes-api:8080", env
            assert not spec["automountServiceAccountToken"]
            continue
        assert c["image"] == "ghcr.io/philotes/philotes:0.1.0", c["image"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["PHILOTES_MANAGED"] == "true" and env["PHILOTES_BUFFER_URL_FILE"].endswith("/buffer-url"), env
    # One settings file for every role, whichever chart runs it: the same checksum everywhere.
    (config,) = by_kind(objects, "ConfigMap")["philotes"]["data"].values()
    sums = {d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for n, d in by_kind(objects, "Deployment").items() if n != "philotes-dashboard"}
    assert len(sums) == 1 and len(sums.pop()) == 64
    assert 'catalog_uri = "http://lakekeeper:8181/catalog"' in config


def test_a_changed_setting_rolls_every_role(built):
    def sums(objects):
        return {n: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                for n, d in by_kind(objects, "Deployment").items() if n != "philotes-dashboard"}
    before = sums(render(built))
    after = sums(render(built, extra={"global": {"config": {"flushInterval": "5s"}}}))
    assert set(before) == {"philotes-ingest", "philotes-worker", "philotes-api"}
    assert all(before[n] != after[n] for n in before)


def test_keda_scales_workers_on_the_buffer_depth_and_an_hpa_stands_in_without_it(built):
    objects = render(built, "values.prod.yaml")
    (scaled,) = by_kind(objects, "ScaledObject").values()
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == 'sum(max by (pipeline) (philotes_buffer_depth{namespace="data"}))'
    assert trigger["metadata"]["threshold"] == "100000"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"], scaled["spec"]["cooldownPeriod"]) == (2, 6, 600)
    worker = by_kind(objects, "Deployment")["philotes-worker"]
    assert "replicas" not in worker["spec"], "KEDA owns the worker count"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "philotes-worker"
    objects = render(built, extra={"philotes-worker": {"worker": {"autoscaling": {"keda": {"enabled": False}, "hpa": {"enabled": True}}}}})
    assert not by_kind(objects, "ScaledObject")
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "philotes-worker" and hpa["spec"]["maxReplicas"] == 4
    objects = render(built, "values.dev.yaml")
    assert not by_kind(objects, "ScaledObject") and not by_kind(objects, "HorizontalPodAutoscaler")
    assert by_kind(objects, "Deployment")["philotes-worker"]["spec"]["replicas"] == 1


def egress_ports(p):
    return sorted({port["port"] for rule in p["spec"]["egress"] for port in rule["ports"]})


def test_network_policies_allow_only_what_each_role_needs(built):
    objects = render(built)
    policies = by_kind(objects, "NetworkPolicy")
    assert set(policies) == {"philotes-ingest", "philotes-worker", "philotes-api", "philotes-dashboard"}
    # ingest: source + control database (5432), object store (443: the provider's), catalog (8181), DNS.
    assert egress_ports(policies["philotes-ingest"]) == [53, 443, 5432, 8181]
    assert egress_ports(policies["philotes-worker"]) == [53, 443, 5432, 8181]
    assert egress_ports(policies["philotes-api"]) == [53, 5432]
    worker_peers = [peer for rule in policies["philotes-worker"]["spec"]["egress"] for peer in rule["to"]]
    assert {"ipBlock": {"cidr": "10.0.0.0/8"}} not in worker_peers, "workers never reach the source"
    store = [r for r in policies["philotes-worker"]["spec"]["egress"] if r["ports"][0]["port"] == 443][0]
    assert store["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}}]
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
    # Subcharts turned off take their objects with them.
    off = render(built, extra={"philotes-dashboard": {"enabled": False}, "philotes-api": {"enabled": False}})
    assert set(by_kind(off, "NetworkPolicy")) == {"philotes-ingest", "philotes-worker"}
    assert not [o for o in off if o["metadata"]["name"].startswith(("philotes-api", "philotes-dashboard"))]


def test_the_control_database_and_s3_can_run_in_the_cluster(built):
    """values.dev.yaml: CloudNativePG runs the control database, SeaweedFS the lake's S3."""
    objects = render(built, "values.dev.yaml")
    (cluster,) = by_kind(objects, "Cluster").values()
    assert cluster["metadata"]["name"] == "philotes-control"
    assert cluster["spec"]["bootstrap"]["initdb"] == {"database": "philotes", "owner": "philotes"}
    assert cluster["spec"]["imageName"].startswith("ghcr.io/cloudnative-pg/postgresql:18.")
    # The roles read the buffer's URL from the Secret CloudNativePG makes, the rest from theirs.
    ingest = by_kind(objects, "Deployment")["philotes-ingest"]["spec"]["template"]["spec"]
    (secrets,) = [v for v in ingest["volumes"] if v["name"] == "secrets"]
    sources = secrets["projected"]["sources"]
    assert sources[0]["secret"] == {"name": "philotes-control-app", "items": [{"key": "uri", "path": "buffer-url"}]}
    assert sources[1]["secret"]["name"] == "philotes"
    assert [i["path"] for i in sources[1]["secret"]["items"]] == ["encryption-key", "s3-access-key-id", "s3-secret-access-key"]
    # Its database does not exist before the first install: migrations run after it, then before upgrades.
    (job,) = [j for j in by_kind(objects, "Job").values() if j["metadata"]["name"] == "philotes-migrate"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    # The policies point at the in-cluster S3 and the database's pods.
    policies = by_kind(objects, "NetworkPolicy")
    assert egress_ports(policies["philotes-worker"]) == [53, 5432, 8181, 8333]
    store = policies["philotes-objectstore"]["spec"]
    assert store["egress"] == [store["egress"][0]] and egress_ports(policies["philotes-objectstore"]) == [53]
    (clients,) = store["ingress"]
    assert clients["ports"] == [{"port": "s3", "protocol": "TCP"}]
    assert clients["from"][0]["podSelector"]["matchExpressions"][1]["values"] == ["ingest", "worker", "objectstore-bucket"]
    # SeaweedFS: its keys rendered from the secret files into memory, the bucket made by a hook.
    sts = by_kind(objects, "StatefulSet")["philotes-objectstore"]
    pod = sts["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["command"] == ["/bin/sh", "/scripts/identities.sh"]
    assert {"name": "config", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}} in pod["volumes"]
    assert "-s3.config=/config/s3.json" in pod["containers"][0]["args"]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    bucket = by_kind(objects, "Job")["philotes-objectstore-bucket"]
    assert bucket["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    env = {e["name"]: e["value"] for e in bucket["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BUCKET"] == "philotes-lake" and env["AWS_ENDPOINT_URL"] == "http://philotes-objectstore:8333"
    scripts = by_kind(objects, "ConfigMap")["philotes-objectstore-scripts"]["data"]
    assert scripts["make-bucket.sh"] == (HELM / "philotes-objectstore" / "files" / "make-bucket.sh").read_text()
    config = by_kind(objects, "ConfigMap")["philotes"]["data"]["philotes.toml"]
    assert 's3_endpoint = "http://philotes-objectstore:8333"' in config


def test_contradicting_settings_fail_with_what_to_change(built):
    with pytest.raises(Exception) as e:
        render(built, extra={"philotes-postgresql": {"enabled": True}})
    assert "set global.secrets.bufferUrlFrom.name to philotes-control-app" in str(e.value)
    with pytest.raises(Exception) as e:
        render(built, extra={"philotes-objectstore": {"enabled": True}})
    assert "set it to http://philotes-objectstore:8333" in str(e.value)


def test_secrets_come_from_a_secret_or_from_vault_never_from_values(built):
    objects = render(built)
    ingest = by_kind(objects, "Deployment")["philotes-ingest"]["spec"]["template"]
    volumes = {v["name"]: v for v in ingest["spec"]["volumes"]}
    (only,) = volumes["secrets"]["projected"]["sources"]
    assert only["secret"]["name"] == "philotes" and len(only["secret"]["items"]) == 4
    assert "vault.hashicorp.com/agent-inject" not in ingest["metadata"]["annotations"]
    objects = render(built, "values.prod.yaml")
    for role in ("ingest", "worker", "api"):
        pod = by_kind(objects, "Deployment")[f"philotes-{role}"]["spec"]["template"]
        a = pod["metadata"]["annotations"]
        assert a["vault.hashicorp.com/agent-inject"] == "true" and a["vault.hashicorp.com/role"] == "philotes"
        assert a["vault.hashicorp.com/agent-inject-secret-buffer-url"] == "secret/data/philotes/buffer-url"
        assert '{{- with secret "secret/data/philotes/buffer-url" -}}{{ .Data.data.value }}{{- end -}}' in \
            a["vault.hashicorp.com/agent-inject-template-buffer-url"]
        assert "secrets" not in {v["name"] for v in pod["spec"]["volumes"]}
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["PHILOTES_BUFFER_URL_FILE"] == "/vault/secrets/buffer-url"
        assert env["PHILOTES_ENCRYPTION_KEY_FILE"] == "/vault/secrets/encryption-key"
        assert pod["spec"]["automountServiceAccountToken"] is True


def test_migrations_run_as_a_hook_before_install_and_upgrade(built):
    (job,) = by_kind(render(built), "Job").values()
    a = job["metadata"]["annotations"]
    assert a["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "hook-succeeded" in a["helm.sh/hook-delete-policy"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_prometheus_rule_is_the_tested_alert_file_with_the_charts_threshold(built):
    chart_copy = (CHART / "files" / "alerts.yml").read_text()
    assert chart_copy == (ROOT / "deployments" / "monitoring" / "alerts.yml").read_text(), \
        "copy deployments/monitoring/alerts.yml to the chart's files/alerts.yml"

    def rules(objects):
        (rule,) = by_kind(objects, "PrometheusRule").values()
        return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    tested = {r["alert"]: r for g in yaml.safe_load(chart_copy)["groups"] for r in g["rules"]}
    rendered = rules(render(built))
    assert set(rendered) == set(tested)
    for name, rule in tested.items():
        if name != "PhilotesSlotWalNearLimit":
            assert rendered[name] == rule, name
    # The threshold is a chart value; its default is the tested file's 2 GiB.
    assert tested["PhilotesSlotWalNearLimit"]["expr"].endswith("< 2 * 1024 * 1024 * 1024")
    assert rendered["PhilotesSlotWalNearLimit"]["expr"] == "max by (pipeline) (philotes_slot_safe_wal_bytes) < 2147483648"
    assert rules(render(built, "values.prod.yaml"))["PhilotesSlotWalNearLimit"]["expr"].endswith("< 4294967296")
    (monitor,) = by_kind(render(built), "ServiceMonitor").values()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_the_values_schemas_refuse_wrong_types_and_unknown_keys(built):
    for bad in ({"philotes-worker": {"worker": {"replicas": "two"}}}, {"workers": {"replicas": 2}},
                {"global": {"ports": {"api": 70000}}}, {"global": {"image": {"pullPolicy": "Sometimes"}}},
                {"philotes-dashboard": {"replicas": -1}}, {"philotes-dashboard": {"image": {"registry": "x"}}},
                {"global": {"networkPolicy": {"source": {"peers": [], "port": 5432}}}},
                {"philotes-api": {"replica": 2}}, {"global": {"lake": {"s3Endpoint": "minio:9000"}}},
                {"philotes-postgresql": {"enabled": True, "instances": 0}, "global": {"secrets": {"bufferUrlFrom": {"name": "x"}}}},
                {"philotes-objectstore": {"enabled": True, "bucket": "Lake_1"}, "global": {"lake": {"s3Endpoint": "http://philotes-objectstore:8333"}}},
                {"monitoring": {"alerts": {"slotSafeWalBytes": "2GiB"}}}):
        # A fresh load each time: rendering drops the disabled subcharts from the loaded chart.
        chart = helm().Chart.load(str(built))
        with pytest.raises(Exception, match="schema"):
            chart.render(bad, name="philotes", namespace="data", is_install=True)
            pytest.fail(f"not refused: {bad}")
    for name in SUBCHARTS + ["philotes"]:
        schema = json.loads((HELM / name / "values.schema.json").read_text())
        assert schema["additionalProperties"] is False, name
