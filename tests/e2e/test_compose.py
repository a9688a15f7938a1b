"""The local stack (deployments/docker/docker-compose.yml), checked without a container engine:
against the Compose specification (the compose_spec parser, which refuses unknown keys), and
for what it promises — every dependency a service, health checks and start order, pinned
images, files it mounts present, every secret from .env (.env.example names them all), ports
only on localhost, Philotes' containers read-only, and its Prometheus and Alertmanager files
accepted by promtool and amtool."""
import json
import re
import shutil
import subprocess

import yaml
from compose_spec import PyCompose

from conftest import ROOT

DOCKER = ROOT / "deployments" / "docker"


def load():
    text = (DOCKER / "docker-compose.yml").read_text()
    return text, yaml.safe_load(text)  # PyYAML resolves the `<<` merge keys as Compose does


def test_the_compose_file_follows_the_compose_specification():
    _, doc = load()
    spec = {k: v for k, v in doc.items() if not k.startswith("x-")}
    PyCompose.from_json(json.dumps(spec))
    # The parser does refuse what the specification does not know.
    bad = json.loads(json.dumps(spec))
    bad["services"]["source"]["healthchek"] = {}
    try:
        PyCompose.from_json(json.dumps(bad))
        raise AssertionError("an unknown key was accepted")
    except ValueError as e:
        assert "healthchek" in str(e)


def test_the_stack_starts_in_order_with_pinned_images_and_its_secrets_from_env():
    text, doc = load()
    services = doc["services"]
    assert {"source", "control-db", "s3", "lakekeeper", "trino", "prometheus", "alertmanager", "grafana",
            "philotes-migrate", "philotes-api", "philotes-ingest", "philotes-worker", "philotes-dashboard"} <= set(services)
    one_shot = set()
    for name, s in services.items():
        for dep, cond in (s.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on {dep}, which is not a service"
            if cond["condition"] == "service_completed_successfully":
                one_shot.add(dep)
            else:
                assert cond["condition"] == "service_healthy", (name, dep)
    for name, s in services.items():
        image = s["image"]
        assert re.search(r":[\w.-]+$", image) and not image.endswith((":latest", ":main")), f"{name}: {image} is not pinned"
        if name not in one_shot:
            # A long-running service says when it is ready (the philotes image's HEALTHCHECK
            # is its own `philotes healthcheck`).
            assert "healthcheck" in s or image in ("philotes:local", "philotes-dashboard:local"), f"{name} has no health check"
        for port in s.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
        for vol in s.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DOCKER / src).exists(), f"{name} mounts {src}, which is missing"
    for name in ("philotes-api", "philotes-ingest", "philotes-worker", "philotes-migrate"):
        s = services[name]
        assert s["read_only"] is True and s["build"]["dockerfile"] == "deployments/docker/Dockerfile", name
        assert s["environment"]["PHILOTES_BUFFER_URL"].startswith("postgres://philotes:${CONTROL_DB_PASSWORD:?")
    assert services["philotes-worker"]["deploy"]["replicas"] == 2
    # The console: its own image (whose HEALTHCHECK is shell-free), read-only, after the API.
    dash = services["philotes-dashboard"]
    assert (DOCKER / dash["build"]["context"] / dash["build"]["dockerfile"]).resolve() == (DOCKER / "Dockerfile.dashboard").resolve()
    assert dash["read_only"] is True and dash["environment"]["PHILOTES_API_URL"] == "http://philotes-api:8080"
    assert dash["depends_on"] == {"philotes-api": {"condition": "service_healthy"}}
    assert services["philotes-ingest"]["command"] == ["ingest", "--managed"]
    assert "wal_level=logical" in services["source"]["command"]
    # Every variable the file needs is in .env.example, and no secret is written in the file.
    needed = set(re.findall(r"\$\{(\w+)", text))
    example = {line.split("=", 1)[0] for line in (DOCKER / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert needed <= example, needed - example
    raw = yaml.safe_load(text.replace("${", "<<var:"))  # values as written, before interpolation
    for name, s in raw["services"].items():
        for k, v in (s.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|ENCRYPTION_KEY|URL_(READ|WRITE)|BUFFER_URL", k):
                assert "<<var:" in str(v), f"{name}: {k} is written in the file, not taken from .env"


def test_the_stacks_prometheus_and_alertmanager_files_pass_their_checkers(tmp_path):
    local = DOCKER / "local"
    cfg = (local / "prometheus.yml").read_text()
    assert "/etc/prometheus/alerts.yml" in cfg
    shutil.copy(ROOT / "deployments" / "monitoring" / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(cfg.replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml")))
    out = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
    assert out.returncode == 0 and re.search(r"SUCCESS: [1-9]\d* rules found", out.stdout), out.stdout + out.stderr
    out = subprocess.run(["amtool", "check-config", str(local / "alertmanager.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
