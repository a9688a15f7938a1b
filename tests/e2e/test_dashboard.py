"""The dashboard (web/) in a real browser: Playwright drives Debian's Chromium through the
scenarios in web/e2e/, against the real `philotes api` on a real control database and real
sources. This test starts everything, hands the addresses to the Playwright suite, and fails
with its report when a scenario fails."""
import os
import shutil
import subprocess
import urllib.request

import pytest

from conftest import ROOT
from pgcluster import free_port
from test_api import api, make_user, source_body  # noqa: F401 (the `api` fixture)
from test_telemetry import wait_for

WEB = ROOT / "web"
SERVER = WEB / ".next" / "standalone" / "server.js"


def dashboard(api_url, log):
    """The dashboard's standalone server (what its image runs) on a free port."""
    port = free_port()
    proc = subprocess.Popen(["node", str(SERVER)], cwd=SERVER.parent, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PORT": str(port), "HOSTNAME": "127.0.0.1",
                                 "PHILOTES_API_URL": api_url, "NEXT_TELEMETRY_DISABLED": "1"})
    url = f"http://127.0.0.1:{port}"

    def up():
        assert proc.poll() is None, f"the dashboard exited {proc.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False
    wait_for("the dashboard", up, timeout=60)
    return proc, url


@pytest.fixture(scope="module")
def built():
    if not SERVER.exists():
        subprocess.run(["npm", "run", "build"], cwd=WEB, check=True, timeout=600,
                       env={**os.environ, "NEXT_TELEMETRY_DISABLED": "1"})
    assert shutil.which("chromium") or os.path.exists("/usr/bin/chromium"), "Debian's chromium is needed (test-env.sh)"


def test_the_dashboard_in_a_real_browser(built, api, source, tmp_path):  # noqa: F811
    password = "dashboard-Passw0rd-e2e"
    made = make_user(api, "ada", "admin", password)
    assert made.returncode == 0, made.stderr
    admin = api.key("admin")
    source.sql("CREATE TABLE orders (id int PRIMARY KEY, v text)")
    s, _, src = api.call("POST", "/api/v1/sources", body=source_body(source, name="shop", user="postgres"), key=admin)
    assert s == 201, src
    s, _, shop = api.call("POST", "/api/v1/pipelines", body={"name": "shop", "source_id": src["id"]}, key=admin)
    assert s == 201, shop
    assert api.call("POST", f"/api/v1/pipelines/{shop['id']}/start", key=admin)[0] == 200
    # A source nothing answers at: its pipeline needs a person.
    dead = source_body(source, name="gone", user="postgres", port=free_port())
    s, _, gone = api.call("POST", "/api/v1/sources", body=dead, key=admin)
    assert s == 201, gone
    s, _, broken = api.call("POST", "/api/v1/pipelines", body={"name": "broken", "source_id": gone["id"]}, key=admin)
    assert s == 201, broken
    assert api.call("POST", f"/api/v1/pipelines/{broken['id']}/start", key=admin)[0] == 200

    log = open(tmp_path / "dashboard.log", "w")
    up, url = dashboard(api.url, log)
    # A second dashboard whose API is not there.
    down, down_url = dashboard(f"http://127.0.0.1:{free_port()}", log)
    try:
        out = subprocess.run(
            ["npx", "playwright", "test"], cwd=WEB, capture_output=True, text=True, timeout=600,
            env={**os.environ, "DASHBOARD_URL": url, "E2E_DOWN_URL": down_url, "E2E_USER": "ada",
                 "E2E_PASSWORD": password, "E2E_API_URL": api.url, "E2E_API_KEY": admin,
                 "E2E_SHOP_ID": str(shop["id"]), "PLAYWRIGHT_HTML_OPEN": "never"})
        report = out.stdout + out.stderr
        assert out.returncode == 0, report + "\n--- dashboard log:\n" + (tmp_path / "dashboard.log").read_text()[-4000:]
        assert " 4 passed" in report, report
    finally:
        for p in (up, down):
            p.terminate()
            p.wait(timeout=30)
        log.close()
