"""A REST catalog: lakana-server (an Iceberg REST catalog that installs here; production uses
Lakekeeper), read back with pyiceberg's RestCatalog."""
import base64
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from pyiceberg.catalog.rest import RestCatalog

from compare import assert_same
from lake import Lake

ROOT = Path(__file__).resolve().parents[2]
LAKANA = Path(os.environ.get("PHILOTES_LAKANA_VENV", ROOT / ".venv-lakana")) / "bin" / "lakana-server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rest_catalog(tmp_path):
    if not LAKANA.exists():
        pytest.fail(f"{LAKANA} is missing: run deployments/scripts/test-env.sh")
    port = free_port()
    token_file = tmp_path / "token"
    env = {
        **os.environ,
        "LAKANA_DATABASE__URL": f"sqlite:///{tmp_path / 'lakana.db'}",
        "LAKANA_BOOTSTRAP_TOKEN_FILE": str(token_file),
        "LAKANA_SECRETS__MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "LAKANA_PORT": str(port),
    }
    subprocess.run([str(LAKANA), "migrate"], env=env, check=True, capture_output=True)
    server = subprocess.Popen([str(LAKANA)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            if token_file.exists() and token_file.read_text().strip():
                try:
                    urllib.request.urlopen(uri + "/v1/config", timeout=1)
                except urllib.error.HTTPError:
                    break  # answering (401 without a token)
                except OSError:
                    pass
            time.sleep(0.1)
        token = token_file.read_text().strip()
        warehouse = tmp_path / "warehouse"
        warehouse.mkdir()
        req = urllib.request.Request(
            uri + "/api/v1/environments",
            data=json.dumps({"name": "dev", "storage": {"scheme": "file", "root": f"file://{warehouse}"}}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=10)
        yield uri, token, warehouse
    finally:
        server.terminate()
        server.wait()


def test_rest_catalog(source, rest_catalog):
    uri, token, warehouse = rest_catalog
    source.sql("CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(14,2))")
    source.sql("INSERT INTO accounts SELECT g, 'o' || g, g * 10 FROM generate_series(1, 500) g")
    args = [
        "--catalog-uri", uri, "--catalog-prefix", "dev", "--namespace", "bronze",
        "--warehouse", f"file://{warehouse}",
    ]
    env = {"PHILOTES_CATALOG_TOKEN": token}
    source.run(*args, env=env)
    source.sql("UPDATE accounts SET balance = balance - 5 WHERE id % 3 = 0")
    source.sql("DELETE FROM accounts WHERE id > 490")
    _, err, _ = source.run(*args, env=env)
    assert token not in err
    catalog = RestCatalog("rest", uri=uri, token=token, prefix="dev")
    lake = Lake(catalog=catalog)
    assert assert_same(source, lake, "bronze.public__accounts__changelog", "SELECT * FROM accounts", ["id"]) == 490
    props = [s.summary.additional_properties for s in catalog.load_table("bronze.public__accounts__changelog").snapshots()]
    assert len(props) == 2 and all("philotes.watermark-lsn" in p for p in props)
    # A wrong token is an error that says where the catalog is, without the token.
    code, err, _ = source.run(*args, env={"PHILOTES_CATALOG_TOKEN": "wrong-token-xyz"}, check=False)
    assert code != 0 and "wrong-token-xyz" not in err
