"""The image (deployments/docker/): hadolint on every Dockerfile, and what the image promises
checked in the file itself — a fixed non-root user, a health check that needs no shell, pinned
bases, a runtime stage with no compiler or package manager, and a build context without the
repository's bulk. (No container engine runs here to build it: see docs/decisions/014-images.md.)"""
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

DOCKER = ROOT / "deployments" / "docker"


def dockerfiles():
    files = sorted(DOCKER.glob("Dockerfile*"))
    assert files, "no Dockerfile in deployments/docker"
    return files


def test_hadolint_passes_every_dockerfile():
    hadolint = Path(sys.executable).parent / "hadolint"
    for f in dockerfiles():
        out = subprocess.run([str(hadolint), "--failure-threshold", "info", str(f)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{f.name}: {out.stdout}{out.stderr}"


def stages(text):
    """[(FROM line, the stage's instructions)] of a Dockerfile."""
    out = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append((line, []))
        elif out:
            out[-1][1].append(line)
    return out


def test_the_image_runs_as_a_fixed_non_root_user_with_a_shell_free_health_check():
    for f in dockerfiles():
        text = f.read_text()
        all_stages = stages(text)
        for base, _ in all_stages:
            image = base.split()[1]
            assert ":" in image and not image.endswith(":latest"), f"{f.name}: unpinned base {image}"
        runtime_from, runtime = all_stages[-1]
        assert "distroless" in runtime_from or "scratch" in runtime_from, runtime_from
        users = [i.split(None, 1)[1] for i in runtime if i.upper().startswith("USER ")]
        assert users and re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[-1]), users
        checks = [i for i in runtime if i.upper().startswith("HEALTHCHECK ")]
        # Exec form only: there is no shell in the image to run a string.
        health = {"Dockerfile": 'CMD ["/usr/local/bin/philotes", "healthcheck"]',
                  "Dockerfile.dashboard": 'CMD ["/nodejs/bin/node", "-e", "fetch(\'http://127.0.0.1:\''}[f.name]
        assert checks and health in checks[0], checks
        assert not any(i.upper().startswith("RUN ") for i in runtime), "the runtime stage runs nothing at build"
        labels = " ".join(i for i in runtime if i.upper().startswith("LABEL "))
        for key in ("title", "source", "licenses", "version", "revision"):
            assert f"org.opencontainers.image.{key}=" in labels, key
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in ("target/", ".git/", ".venv/", "tests/"):
        assert path in ignored, path
    # The dashboard's context is web/: its packages and builds stay out.
    ignored = (ROOT / "web" / ".dockerignore").read_text().split()
    for path in ("node_modules/", ".next/"):
        assert path in ignored, path
