"""Throwaway TLS certificates for tests (openssl)."""
import subprocess
from pathlib import Path


def make_certs(directory: Path):
    """A CA and a server certificate for the name `localhost` only."""
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=philotes-test-ca")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (directory / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
