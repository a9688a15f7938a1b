"""A throwaway PostgreSQL cluster for tests and the demo: initdb on a free port, `wal_level=logical`.

Run as root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
"""
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL is not installed: run deployments/scripts/test-env.sh")
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, settings=None, before_start=None):
        """`settings`: extra or overriding server settings; `before_start(cluster)` runs after initdb."""
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="philotes-pg-"))
        self.data = self.base / "data"
        self.as_user = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        bin_ = pg_bin()
        self.bin = bin_
        subprocess.run(
            self.as_user + [str(bin_ / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"],
            check=True, stdout=subprocess.DEVNULL,
        )
        conf = {
            "listen_addresses": "127.0.0.1", "wal_level": "logical", "fsync": "off",
            "max_replication_slots": "40", "max_wal_senders": "40", "full_page_writes": "off",
            "synchronous_commit": "off", **(settings or {}),
        }
        if before_start:
            before_start(self)
        self.opts = f"-p {self.port} -k {self.base} " + " ".join(f"-c {k}={v}" for k, v in conf.items())
        self.start_server()

    def start_server(self):
        subprocess.run(
            self.as_user + [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"), "-o", self.opts, "-w", "start"],
            check=True, stdout=subprocess.DEVNULL,
        )

    def stop_server(self, mode="fast"):
        """Stop the server but keep its data (`start_server` brings it back)."""
        r = subprocess.run(
            self.as_user + [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        if r.returncode != 0:
            log = "\n".join(l for l in (self.base / "log").read_text().splitlines() if "is shutting down" not in l)[-5000:]
            raise AssertionError(f"pg_ctl stop -m {mode} failed: {r.stderr}\n{log}")

    def url(self, db="postgres"):
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}?sslmode=disable"

    def stop(self):
        subprocess.run(
            self.as_user + [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.base, ignore_errors=True)
