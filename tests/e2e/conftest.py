"""Test harness: a real PostgreSQL started here, the real `philotes` binary, and pyiceberg +
pyarrow as the independent reader of what it writes.

Each test gets its own database in one throwaway cluster (initdb as the `postgres` user when
run as root, `wal_level=logical`, `fsync=off`), and its own data directory.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lake import Lake  # noqa: E402
from pgcluster import Cluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Every role serves /metrics; tests run several at once, so each takes any free port (a test of
# the endpoints names its own).
os.environ.setdefault("PHILOTES_METRICS_ADDR", "127.0.0.1:0")
BINARY = Path(os.environ.get("PHILOTES_BIN", ROOT / "target" / "debug" / "philotes"))


@pytest.fixture(scope="session")
def cluster():
    if not BINARY.exists():
        pytest.exit(f"{BINARY} is missing: run cargo build first", 2)
    # A tiny logical_decoding_work_mem makes the source stream every transaction over 64 kB
    # while it runs (pgoutput protocol 2), so every test also exercises the spill path.
    c = Cluster(settings={"logical_decoding_work_mem": "64kB"})
    yield c
    c.stop()


class Source:
    """One database of the cluster, plus the philotes runs against it."""

    def __init__(self, cluster, name, tmp_path):
        self.cluster = cluster
        self.name = name
        with psycopg.connect(cluster.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        self.url = cluster.url(name)
        self.data_dir = tmp_path / "philotes-data"
        self.conn = psycopg.connect(self.url, autocommit=True)

    def sql(self, q, params=None):
        cur = self.conn.execute(q, params)
        return cur.fetchall() if cur.description else None

    def philotes_cmd(self, *extra):
        return [str(BINARY), "run", "--source", self.url, "--data-dir", str(self.data_dir), *extra]

    def run(self, *extra, check=True, env=None, timeout=900):
        """`philotes run --until-caught-up`; returns (exit code, stderr, peak RSS in KiB)."""
        return run_philotes(self.philotes_cmd("--until-caught-up", *extra), check=check, env=env, timeout=timeout)

    def resync(self, *extra, check=True):
        """`philotes resync --until-caught-up [TABLE...]`."""
        cmd = [str(BINARY), "resync", "--source", self.url, "--data-dir", str(self.data_dir), "--until-caught-up", *extra]
        return run_philotes(cmd, check=check)

    def start(self, *extra):
        """Start `philotes run` in the background (for kill tests). Its log goes to a file, not a
        pipe: a pipe nobody reads fills up after 64 kB and stalls the process. `p.stderr.read()`
        and `p.communicate()` read the file."""
        log = tempfile.TemporaryFile(mode="w+")
        p = subprocess.Popen(self.philotes_cmd(*extra), stdout=subprocess.DEVNULL, stderr=log, text=True)
        return Logged(p, log)

    def lake(self, **kw):
        return Lake(self.data_dir, **kw)

    def close(self):
        self.conn.close()
        with psycopg.connect(self.cluster.url(), autocommit=True) as c:
            for (slot,) in c.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (self.name,)
            ).fetchall():
                # The walsender of a just-ended philotes may take a moment to let go.
                for _ in range(300):
                    try:
                        c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                        break
                    except psycopg.errors.ObjectInUse:
                        time.sleep(0.1)
            c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Logged:
    """A process whose stderr is a file: `stderr.read()` gives everything logged so far."""

    def __init__(self, p, log):
        self._p, self._log = p, log
        self.stderr = self

    def read(self):
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def communicate(self, timeout=None):
        self._p.wait(timeout=timeout)
        return None, self.read()

    def __getattr__(self, name):
        return getattr(self._p, name)


def stop_roles(roles):
    """Stop every role still running (SIGTERM); each must exit 0, or its log's tail says why."""
    for r in roles:
        if r.alive():
            assert r.stop() == 0, r.tail()


def run_philotes(cmd, check=True, env=None, timeout=900, stdout=subprocess.DEVNULL):
    """Run a philotes command to its end; returns (exit code, stderr, peak RSS in KiB)."""
    with tempfile.TemporaryFile(mode="w+") as err_file:
        p = subprocess.Popen(
            cmd, stdout=stdout, stderr=err_file, text=True, env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + timeout
        peak_kib = 0
        while True:
            # VmHWM is the peak RSS since exec (rusage would count the forked Python too).
            peak_kib = max(peak_kib, vm_hwm_kib(p.pid))
            pid, status, _ = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                raise AssertionError(f"{cmd[:2]} did not finish in {timeout} s")
            time.sleep(0.02)
        p.returncode = os.waitstatus_to_exitcode(status)
        err_file.seek(0)
        err = err_file.read()
    if check and p.returncode != 0:
        raise AssertionError(f"philotes exited {p.returncode}:\n{err[-6000:]}")
    return p.returncode, err, peak_kib


def vm_hwm_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return 0


@pytest.fixture
def source(cluster, request, tmp_path):
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")[:50]
    s = Source(cluster, name, tmp_path)
    yield s
    s.close()
