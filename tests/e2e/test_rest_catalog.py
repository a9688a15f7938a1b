"""A REST catalog: lakana-server (an Iceberg REST catalog that installs here; production uses
Lakekeeper), read back with pyiceberg's RestCatalog."""
import base64
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from pyiceberg.catalog.rest import RestCatalog

from certs import make_certs
from conftest import BINARY
from compare import assert_same
from pgcluster import free_port
from lake import Lake

ROOT = Path(__file__).resolve().parents[2]
LAKANA = Path(os.environ.get("PHILOTES_LAKANA_VENV", ROOT / ".venv-lakana")) / "bin" / "lakana-server"


SERVE_TLS = """
import sys, uvicorn
from lakana_server.app import create_app
from lakana_server.settings import Settings
s = Settings()
uvicorn.run(create_app(s), host=s.host, port=s.port, ssl_certfile=sys.argv[1], ssl_keyfile=sys.argv[2], log_level="warning")
"""


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory):
    """The catalog's database, migrated once and copied for each test."""
    if not LAKANA.exists():
        pytest.fail(f"{LAKANA} is missing: run deployments/scripts/test-env.sh")
    db = tmp_path_factory.mktemp("lakana") / "template.db"
    env = {**os.environ, "LAKANA_DATABASE__URL": f"sqlite:///{db}"}
    subprocess.run([str(LAKANA), "migrate"], env=env, check=True, capture_output=True)
    return db


@pytest.fixture(params=["http", "https"])
def rest_catalog(tmp_path, request, migrated_db):
    port = free_port()
    shutil.copy(migrated_db, tmp_path / "lakana.db")
    token_file = tmp_path / "token"
    env = {
        **os.environ,
        "LAKANA_DATABASE__URL": f"sqlite:///{tmp_path / 'lakana.db'}",
        "LAKANA_BOOTSTRAP_TOKEN_FILE": str(token_file),
        "LAKANA_SECRETS__MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "LAKANA_PORT": str(port),
    }
    if request.param == "https":
        # The same server behind TLS, with a certificate for `localhost` from a throwaway CA.
        certs = tmp_path / "certs"
        certs.mkdir()
        make_certs(certs)
        cmd = [str(LAKANA.parent / "python"), "-c", SERVE_TLS, str(certs / "server.pem"), str(certs / "server.key")]
        uri = f"https://localhost:{port}"
        ca = certs / "ca.pem"
    else:
        cmd = [str(LAKANA)]
        uri = f"http://127.0.0.1:{port}"
        ca = None
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        for _ in range(150):
            if token_file.exists() and token_file.read_text().strip():
                try:
                    urllib.request.urlopen(uri + "/v1/config", timeout=1, context=ctx)
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
        urllib.request.urlopen(req, timeout=10, context=ctx)
        yield uri, token, warehouse, ca
    finally:
        server.kill()
        server.wait()


def test_rest_catalog(source, rest_catalog, monkeypatch):
    uri, token, warehouse, ca = rest_catalog
    source.sql("CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(14,2))")
    source.sql("INSERT INTO accounts SELECT g, 'o' || g, g * 10 FROM generate_series(1, 500) g")
    args = [
        "--catalog-uri", uri, "--catalog-prefix", "dev", "--namespace", "bronze",
        "--warehouse", f"file://{warehouse}",
    ]
    # Philotes trusts the system's CA store; SSL_CERT_FILE points it at the test CA.
    env = {"PHILOTES_CATALOG_TOKEN": token, **({"SSL_CERT_FILE": str(ca)} if ca else {})}
    source.run(*args, env=env)
    source.sql("UPDATE accounts SET balance = balance - 5 WHERE id % 3 = 0")
    source.sql("DELETE FROM accounts WHERE id > 490")
    _, err, _ = source.run(*args, env=env)
    assert token not in err
    if ca:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))  # pyiceberg's HTTP client (requests)
    catalog = RestCatalog("rest", uri=uri, token=token, prefix="dev")
    lake = Lake(catalog=catalog)
    assert assert_same(source, lake, "bronze.public__accounts__changelog", "SELECT * FROM accounts", ["id"]) == 490
    props = [s.summary.additional_properties for s in catalog.load_table("bronze.public__accounts__changelog").snapshots()]
    assert len(props) == 2 and all("philotes.watermark-lsn" in p for p in props)
    # Schema changes go through the REST catalog's commit endpoint.
    source.sql("ALTER TABLE accounts RENAME COLUMN owner TO holder")
    source.sql("ALTER TABLE accounts ADD COLUMN note text")
    source.sql("UPDATE accounts SET note = 'n', holder = 'h' WHERE id = 1")
    source.run(*args, env=env)
    assert assert_same(source, lake, "bronze.public__accounts__changelog", "SELECT * FROM accounts", ["id"]) == 490
    fields = {f.name for f in catalog.load_table("bronze.public__accounts__changelog").schema().fields}
    assert {"holder", "note"} <= fields and "owner" not in fields
    # Maintenance commits (a replace snapshot, removed snapshots) through the REST catalog too.
    for i in range(3):
        source.sql(f"UPDATE accounts SET note = 'm{i}' WHERE id = {i + 2}")
        source.run(*args, "--maintenance=false", env=env)
    ident = "bronze.public__accounts__changelog"
    before = catalog.load_table(ident)
    assert len(before.snapshots()) == 6
    watermark = before.current_snapshot().summary.additional_properties["philotes.watermark-lsn"]
    out = subprocess.run(
        [str(BINARY), "maintain", *args, "--snapshot-max-age", "0s", "--snapshot-keep-min", "2", "--format", "json"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (report,) = json.loads(out.stdout)["tables"]
    assert report["rewrite"]["files_in"] == 6 and report["rewrite"]["files_out"] == 1, report
    t = catalog.load_table(ident)
    assert t.current_snapshot().summary.operation.value == "replace"
    assert t.current_snapshot().summary.additional_properties["philotes.watermark-lsn"] == watermark
    # lakana expires snapshots itself and refuses `remove-snapshots` commits: said, not failed.
    refused = report["expiry"].get("refused_by_catalog") or ""
    assert "403" in refused and "expire them with the catalog's own tool" in out.stderr, out.stderr
    assert len(t.snapshots()) == 7
    assert assert_same(source, lake, ident, "SELECT * FROM accounts", ["id"]) == 490
    # The sink streams on from the position the replace snapshot carried forward.
    source.sql("UPDATE accounts SET balance = 0 WHERE id = 7")
    source.run(*args, env=env)
    assert assert_same(source, lake, ident, "SELECT * FROM accounts", ["id"]) == 490
    # A wrong token is an error that says where the catalog is, without the token.
    code, err, _ = source.run(*args, env={**env, "PHILOTES_CATALOG_TOKEN": "wrong-token-xyz"}, check=False)
    assert code != 0 and "wrong-token-xyz" not in err
