"""The project's own scripts and YAML, checked by their ecosystems' linters: ShellCheck on every
shell script (and `bash -n`), yamllint on every YAML file under deployments/ and the CI entry."""
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

YAMLLINT = {"extends": "default", "rules": {"line-length": {"max": 200}, "document-start": "disable",
                                           "truthy": {"check-keys": False}}}


def shell_scripts():
    scripts = sorted((ROOT / "deployments").rglob("*.sh")) + [ROOT / ".ci" / "run"]
    assert len(scripts) > 3, scripts
    return scripts


def test_shellcheck_finds_nothing_in_the_scripts():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: deployments/scripts/test-env.sh installs it"
    out = subprocess.run([shellcheck, "--severity=info", *map(str, shell_scripts())],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for s in shell_scripts():
        assert subprocess.run(["bash", "-n", str(s)], capture_output=True).returncode == 0, s


def test_yamllint_finds_nothing_in_the_deployments_yaml():
    import json
    files = sorted(p for p in (ROOT / "deployments").rglob("*") if p.suffix in (".yml", ".yaml")
                   and "templates" not in p.parts)
    assert files, "no YAML under deployments/"
    yamllint = Path(sys.executable).parent / "yamllint"
    out = subprocess.run([str(yamllint), "--strict", "-d", json.dumps(YAMLLINT), *map(str, files)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


WORKFLOWS = ROOT / ".github" / "workflows"


def test_actionlint_finds_nothing_in_the_workflows():
    """actionlint (with ShellCheck on every `run:` script) on the GitHub workflows, and what each
    one promises."""
    actionlint = Path(sys.executable).parent / "actionlint"
    assert actionlint.exists(), "actionlint is missing: deployments/scripts/test-env.sh installs it"
    assert shutil.which("shellcheck"), "actionlint checks run: scripts with shellcheck"
    out = subprocess.run([str(actionlint), "-color=false"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    import yaml
    wf = {p.stem: yaml.safe_load(p.read_text()) for p in WORKFLOWS.glob("*.yml")}
    assert set(wf) == {"ci", "release", "deploy", "security"}, set(wf)
    steps = lambda name, job: [s.get("run", "") + " " + s.get("uses", "") for s in wf[name]["jobs"][job]["steps"]]  # noqa: E731
    # CI runs exactly the README's test command, then builds the image, pushed from main only.
    assert any(s.strip() == "bash .ci/run" for s in steps("ci", "test"))
    build = next(s for s in wf["ci"]["jobs"]["image"]["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["file"] == "${{ matrix.image.file }}" and "push" in build["with"]["push"]
    # Both images: the binary's (every role) and the dashboard's, each from its own context.
    images = {(m["name"], m["context"], m["file"]) for m in wf["ci"]["jobs"]["image"]["strategy"]["matrix"]["image"]}
    assert images == {("philotes", ".", "deployments/docker/Dockerfile"),
                      ("philotes-dashboard", "web", "deployments/docker/Dockerfile.dashboard")}, images
    assert wf["release"]["jobs"]["image"]["strategy"] == wf["ci"]["jobs"]["image"]["strategy"]
    # A release: both architectures, the chart as OCI, notes.
    rel = wf["release"]["jobs"]
    assert {m["target"] for m in rel["binaries"]["strategy"]["matrix"]["include"]} == {"x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"}
    push = next(s for s in rel["image"]["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    assert push["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert any("helm push" in s and "oci://" in s for s in steps("release", "chart"))
    # Deploys go through GitHub environments (required reviewers for prod) and deploy.sh.
    dep = wf["deploy"]["jobs"]["deploy"]
    assert dep["environment"] == "${{ inputs.environment }}"
    assert wf["deploy"][True]["workflow_dispatch"]["inputs"]["environment"]["options"] == ["dev", "staging", "prod"]
    assert any("deployments/scripts/deploy.sh" in s for s in steps("deploy", "deploy"))
    assert any("cargo audit" in s for s in steps("security", "cargo-audit"))
    assert any("trivy-action" in s for s in steps("security", "image-scan"))
    assert any("npm audit" in s for s in steps("security", "npm-audit"))
    scanned = {m["name"] for m in wf["security"]["jobs"]["image-scan"]["strategy"]["matrix"]["image"]}
    assert scanned == {"philotes", "philotes-dashboard"}, "every image we ship is scanned"
    # Every workflow starts with the least: read-only contents.
    for name, w in wf.items():
        assert w["permissions"] == {"contents": "read"}, name


def test_yamllint_finds_nothing_in_the_workflows():
    import json
    yamllint = Path(sys.executable).parent / "yamllint"
    out = subprocess.run([str(yamllint), "--strict", "-d", json.dumps(YAMLLINT), *map(str, sorted(WORKFLOWS.glob("*.yml")))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_deploy_sh_says_what_is_wrong_and_runs_helm_with_the_environments_values(tmp_path):
    """deploy.sh: a wrong environment or no helm is a clear error (exit 2); otherwise it runs
    `helm upgrade --install` with that environment's values and waits. No cluster and no helm
    binary run here, so a stand-in `helm` on PATH records what it is asked (the chart itself is
    rendered and validated with Helm's library in test_helm.py)."""
    script = ROOT / "deployments" / "scripts" / "deploy.sh"
    out = subprocess.run([str(script), "qa"], capture_output=True, text=True)
    assert out.returncode == 2 and "dev|staging|prod" in out.stderr and "'qa'" in out.stderr, out.stderr
    bare = {"PATH": "/usr/bin:/bin"}
    if not shutil.which("helm", path=bare["PATH"]):
        out = subprocess.run([str(script), "dev"], capture_output=True, text=True, env=bare)
        assert out.returncode == 2 and "helm is not installed" in out.stderr, out.stderr
    log = tmp_path / "helm.log"
    fake = tmp_path / "bin" / "helm"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\n")
    fake.chmod(0o755)
    out = subprocess.run([str(script), "prod", "--set", "image.tag=1.2.3"], capture_output=True, text=True,
                         env={"PATH": f"{fake.parent}:/usr/bin:/bin", "PHILOTES_NAMESPACE": "data"})
    assert out.returncode == 0, out.stderr
    *deps, upgrade, status = log.read_text().splitlines()
    helm_dir = ROOT / "deployments" / "kubernetes" / "helm"
    chart = helm_dir / "philotes"
    # The local subcharts are packed into the umbrella first, the umbrella last.
    assert deps == [f"dependency update {helm_dir / c}" for c in (
        "philotes-worker", "philotes-api", "philotes-dashboard", "philotes-postgresql", "philotes-objectstore", "philotes")]
    assert upgrade == (f"upgrade --install philotes {chart} --namespace data --create-namespace "
                       f"--values {chart}/values.prod.yaml --wait --timeout 10m --set image.tag=1.2.3")
    assert status == "status philotes --namespace data"
    for env in ("dev", "staging", "prod"):
        assert (chart / f"values.{env}.yaml").exists()
