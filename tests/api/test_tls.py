"""HTTPS with --tls-cert/--tls-key: a self-signed certificate made with the
openssl command line; the listening line says https, every endpoint answers
over TLS, and plain HTTP to the TLS port gets nothing."""

import json
import re
import shutil
import signal
import socket
import subprocess

import pytest
import requests

import conftest

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")


@pytest.fixture
def tls_server(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    err = open(tmp_path / "stderr", "wb")
    p = subprocess.Popen([str(conftest.LOSSD_BIN), "--bind", "127.0.0.1", "--port", "0",
                          "--tls-cert", str(cert), "--tls-key", str(key)],
                         stdout=subprocess.PIPE, stderr=err, env=conftest.clean_env())
    try:
        line = p.stdout.readline().decode().strip()
        m = re.match(r"^lossd listening on https://127\.0\.0\.1:(\d+)$", line)
        assert m, line
        yield int(m.group(1)), str(cert)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30 * conftest.SLOW)
        err.close()
        text = (tmp_path / "stderr").read_text(errors="replace")
        assert rc == 0, text
        assert not any(s in text for s in conftest.SANITIZER_MARKERS), text


def test_https(tls_server):
    port, cert = tls_server
    base = f"https://127.0.0.1:{port}"
    r = requests.get(base + "/healthz", verify=cert, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    body = {"loss": {"name": "huber", "delta": 1.0},
            "inputs": {"predictions": [[0.5, 2.0], [1.0, -3.0]], "targets": [[0.0, 2.5], [1.0, 0.0]]},
            "weights": [1.0, 2.0]}
    r = requests.post(base + "/v1/loss", data=json.dumps(body), verify=cert, timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["cost"] == 0.875, r.text
    # plain HTTP on the TLS port: no HTTP answer
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            data = s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            data = b""
        assert not data.startswith(b"HTTP/1.1 200")
    assert requests.get(base + "/readyz", verify=cert, timeout=30).status_code == 200


def test_swapped_certificate_and_key(tmp_path):
    """A key given as the certificate (and the other way round): lossd does not
    start, exits 1 and says which flags to check, not an errno's "Success"."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    p = subprocess.run([str(conftest.LOSSD_BIN), "--bind", "127.0.0.1", "--port", "0",
                        "--tls-cert", str(key), "--tls-key", str(cert)],
                       capture_output=True, text=True, timeout=30 * conftest.SLOW,
                       env=conftest.clean_env())
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == "", p.stdout
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("lossd: cannot start the HTTP server on 127.0.0.1"), p.stderr
    assert "--tls-cert" in last and "Success" not in last, p.stderr
