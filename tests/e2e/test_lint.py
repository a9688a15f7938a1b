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
