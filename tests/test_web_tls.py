"""HTTPS for the web page: `--web-tls auto` makes a self-signed certificate once in the state directory and
reuses it, the user's own certificate and key, plain HTTP then refused, and bad files as one line."""

from __future__ import annotations

import http.client
import logging
import shutil
import ssl
import stat
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_web import TOKEN
from test_web_abuse import result
from test_web_teach import free_port

from edge.errors import EdgerecError
from edge.web import tls
from edge.web.options import TOKEN_ENV, WebOptions
from edge.web.sink import WebSink

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command (Debian: apt install openssl)")


def trusting(cert: Path) -> ssl.SSLContext:
    """A client context that trusts `cert` alone (and checks the host name against it)."""
    return ssl.create_default_context(cafile=str(cert))


def healthz(sink: WebSink, cert: Path) -> int:
    with urllib.request.urlopen(f"{sink.url}healthz", context=trusting(cert), timeout=5) as response:
        return response.status


def openssl_fingerprint(cert: Path) -> str:
    out = subprocess.run([OPENSSL, "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().partition("=")[2]


def make_pair(folder: Path, name: str = "own", days: int = 30) -> tuple[Path, Path]:
    cert, key = folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", "/CN=own",
                    "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True, check=True)
    return cert, key


def plain_http_fails(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        return True
    finally:
        connection.close()
    return False


def test_auto_makes_a_certificate_once_serves_https_only_and_reuses_it(tmp_path, caplog):
    caplog.set_level(logging.INFO, "edgerec.web")
    state = tmp_path / "state"
    sink = WebSink(WebOptions("127.0.0.1:0", tls="auto", state_dir=str(state), stale_after=60))
    folder = state / tls.TLS_DIR
    try:
        sink.write(np.zeros((4, 4, 3), np.uint8), result())
        assert sink.url.startswith("https://127.0.0.1:")
        assert healthz(sink, folder / "cert.pem") == 200
        assert plain_http_fails(sink.port)
        assert healthz(sink, folder / "cert.pem") == 200  # the failed plain request left the server well
    finally:
        sink.close()
    assert stat.S_IMODE((folder / "key.pem").stat().st_mode) == 0o600
    assert [p.name for p in state.iterdir()] == ["tls"]  # no temporary folder left
    fingerprint = openssl_fingerprint(folder / "cert.pem")
    assert sink.tls is not None and sink.tls.fingerprint == fingerprint and sink.tls.origin == "made"
    assert f"SHA-256 fingerprint {fingerprint}" in caplog.text and "(made now)" in caplog.text
    subject = subprocess.run([OPENSSL, "x509", "-in", str(folder / "cert.pem"), "-noout", "-ext", "subjectAltName",
                              "-enddate"], capture_output=True, text=True, check=True).stdout
    assert "DNS:localhost" in subject and "IP Address:127.0.0.1" in subject

    made = (folder / "key.pem").stat().st_mtime_ns
    caplog.clear()
    again = WebSink(WebOptions("127.0.0.1:0", tls="auto", state_dir=str(state), stale_after=60))
    try:
        assert again.tls is not None and again.tls.origin == "kept" and again.tls.fingerprint == fingerprint
        assert "(made by an earlier start)" in caplog.text
        assert (folder / "key.pem").stat().st_mtime_ns == made
    finally:
        again.close()


def test_a_pair_that_expires_soon_is_made_again(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setattr(tls, "CERT_DAYS", 10)  # under RENEW_DAYS: expiring at once
    first = tls.self_signed(state)[0]
    second = tls.self_signed(state)[0]
    assert second.origin == "made" and second.fingerprint != first.fingerprint
    monkeypatch.setattr(tls, "CERT_DAYS", 825)
    third = tls.self_signed(state)[0]
    assert third.origin == "made" and tls.self_signed(state)[0].origin == "kept"


def test_the_users_own_certificate_and_key(tmp_path, caplog):
    caplog.set_level(logging.INFO, "edgerec.web")
    cert, key = make_pair(tmp_path)
    sink = WebSink(WebOptions("127.0.0.1:0", tls_cert=str(cert), tls_key=str(key), state_dir=str(tmp_path / "s"),
                              stale_after=60))
    try:
        sink.write(np.zeros((4, 4, 3), np.uint8), result())
        assert healthz(sink, cert) == 200 and plain_http_fails(sink.port)
    finally:
        sink.close()
    assert f"certificate {cert} (yours), SHA-256 fingerprint {openssl_fingerprint(cert)}" in caplog.text
    assert not (tmp_path / "s" / "tls").exists()


def test_beyond_loopback_the_token_is_still_needed_over_https(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(EdgerecError, match="needs a token"):
        WebOptions("0.0.0.0:0", tls="auto", state_dir=str(tmp_path))
    sink = WebSink(WebOptions("0.0.0.0:0", tls="auto", token=TOKEN, state_dir=str(tmp_path)))
    try:
        context = trusting(tmp_path / "tls" / "cert.pem")
        with pytest.raises(urllib.request.HTTPError, match="401"):
            urllib.request.urlopen(f"https://127.0.0.1:{sink.port}/api/status", context=context, timeout=5)
        request = urllib.request.Request(f"https://127.0.0.1:{sink.port}/api/status",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            assert response.status == 200
    finally:
        sink.close()


def test_bad_files_are_one_line_naming_the_file(tmp_path):
    cert, key = make_pair(tmp_path)
    other_cert, other_key = make_pair(tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    encrypted = tmp_path / "encrypted.pem"
    subprocess.run([OPENSSL, "pkey", "-in", str(key), "-out", str(encrypted), "-aes256", "-passout", "pass:secret"],
                   check=True, capture_output=True)
    cases = {
        (tmp_path / "missing.pem", key): f"web certificate {tmp_path / 'missing.pem'} (--web-cert, web.tls_cert): "
                                         "cannot read it: No such file or directory",
        (cert, tmp_path / "nokey.pem"): f"web key {tmp_path / 'nokey.pem'} (--web-key, web.tls_key): cannot read "
                                        "it: No such file or directory",
        (garbage, key): f"web certificate {garbage} (--web-cert, web.tls_cert): not a PEM certificate",
        (key, key): f"web certificate {key} (--web-cert, web.tls_cert): not a PEM certificate",
        (cert, other_key): f"web key {other_key} (--web-key, web.tls_key) does not match the certificate {cert}",
        (cert, other_cert): f"web key {other_cert} (--web-key, web.tls_key): not a PEM private key for {cert}",
        (cert, encrypted): f"web key {encrypted} (--web-key, web.tls_key) is encrypted",
    }
    for (c, k), message in cases.items():
        with pytest.raises(EdgerecError) as refused:
            tls.given(str(c), str(k))
        assert str(refused.value).startswith(message) and "\n" not in str(refused.value), str(refused.value)


def test_bad_tls_settings_are_one_line(tmp_path):
    with pytest.raises(EdgerecError, match="needs its key"):
        WebOptions("127.0.0.1:0", tls_cert="c.pem")
    with pytest.raises(EdgerecError, match="one of the two"):
        WebOptions("127.0.0.1:0", tls="auto", tls_cert="c.pem", tls_key="k.pem")
    with pytest.raises(EdgerecError, match="valid: auto"):
        WebOptions("127.0.0.1:0", tls="on")


def test_the_cli_refuses_a_missing_certificate_in_one_line(tmp_path):
    key = make_pair(tmp_path)[1]
    done = run_cli("run", "--source", "demo", "--no-display", "--max-frames", "5", "--web", f"127.0.0.1:{free_port()}",
                   "--web-cert", str(tmp_path / "nope.pem"), "--web-key", str(key))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"edgerec: error: web certificate {tmp_path / 'nope.pem'} (--web-cert, web.tls_cert): cannot "
                      "read it: No such file or directory"], done.stderr
    config = tmp_path / "config.toml"
    config.write_text('[source]\nuri = "demo"\n[web]\nlisten = "127.0.0.1:8080"\ntls = "auto"\n')
    done = run_cli("check-config", str(config))
    assert done.returncode == 0 and "web 127.0.0.1:8080 (HTTPS, self-signed certificate)" in done.stdout
    config.write_text('[source]\nuri = "demo"\n[web]\nlisten = "127.0.0.1:8080"\ntls = "yes"\n')
    done = run_cli("check-config", str(config))
    assert done.returncode != 0 and "web.tls" in done.stderr and len(done.stderr.strip().splitlines()) == 1
