"""HTTPS for the web page: the server's TLS context from the user's certificate and key, or from a self-signed
pair made once in the state directory (`--web-tls auto`), and the SHA-256 fingerprint a user pins.

The self-signed pair is made by the `openssl` command (installed wherever Debian's ca-certificates is; see
pyproject.toml for why not the `cryptography` wheel): an ECDSA P-256 key and a certificate valid for
CERT_DAYS days (Apple's clients refuse longer ones) for localhost, 127.0.0.1, ::1, the host's name and
NAME.local. Both files are written into a fresh temporary folder beside STATE/tls (0700, the key 0600) that is
renamed to STATE/tls whole, so a crash never leaves one file without the other; later starts reuse it, and
make a new pair when it expires within RENEW_DAYS days (a new fingerprint to pin, logged).

A file that is missing, unreadable, not PEM, a key that does not match its certificate or asks for a
passphrase: one EdgerecError naming the file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgerecError

TLS_DIR = "tls"
CERT_FILE, KEY_FILE = "cert.pem", "key.pem"
CERT_DAYS = 825
RENEW_DAYS = 30
OPENSSL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TlsFiles:
    """The certificate and key the page is served with, and how they came to be."""

    cert: Path
    key: Path
    fingerprint: str
    """SHA-256 of the certificate (DER), as `openssl x509 -fingerprint -sha256` writes it: AB:CD:..."""
    origin: str
    """"given" (--web-cert/--web-key), "made" (now, by --web-tls auto) or "kept" (made by an earlier start)."""


def given(cert: str, key: str) -> tuple[TlsFiles, ssl.SSLContext]:
    """The user's certificate and key, checked and loaded."""
    files = TlsFiles(Path(cert), Path(key), fingerprint(Path(cert), "--web-cert, web.tls_cert"), "given")
    return files, server_context(files, "--web-key, web.tls_key")


def self_signed(state: Path) -> tuple[TlsFiles, ssl.SSLContext]:
    """The self-signed pair in STATE/tls: made when there is none or it expires within RENEW_DAYS, else kept."""
    folder = state / TLS_DIR
    origin = "kept"
    if not folder.is_dir() or expires_soon(folder / CERT_FILE):
        make_pair(folder)
        origin = "made"
    where = f"made by --web-tls auto; delete {folder} to make a new pair"
    files = TlsFiles(folder / CERT_FILE, folder / KEY_FILE, fingerprint(folder / CERT_FILE, where), origin)
    return files, server_context(files, where)


def fingerprint(cert: Path, where: str) -> str:
    """SHA-256 of the first certificate in PEM file `cert`, AB:CD:... (its absence or garbage: one line)."""
    try:
        text = cert.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise EdgerecError(f"web certificate {cert} ({where}): cannot read it: "
                           f"{getattr(error, 'strerror', None) or error}") from None
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    try:
        if start < 0 or stop < 0:
            raise ValueError("no BEGIN/END CERTIFICATE lines")
        der = ssl.PEM_cert_to_DER_cert(text[start:stop + len(end)])
    except ValueError as error:
        raise EdgerecError(f"web certificate {cert} ({where}): not a PEM certificate ({error})") from None
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def server_context(files: TlsFiles, where: str) -> ssl.SSLContext:
    """A server context (TLS 1.2 or newer, Python's default ciphers) holding `files`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(files.cert, files.key, password=_no_passphrase)
    except OSError as error:
        if not isinstance(error, ssl.SSLError):
            raise EdgerecError(f"web key {files.key} ({where}): cannot read it: {error.strerror or error}") from None
        if getattr(error, "reason", None) == "KEY_VALUES_MISMATCH":
            raise EdgerecError(f"web key {files.key} ({where}) does not match the certificate {files.cert}") from None
        raise EdgerecError(f"web key {files.key} ({where}): not a PEM private key for {files.cert} "
                           f"({error.reason or error})") from None
    except _Passphrase:
        raise EdgerecError(f"web key {files.key} ({where}) is encrypted; valid: a key without a passphrase "
                           f"(openssl pkey -in {files.key} -out plain.pem, then chmod 600 plain.pem)") from None
    return context


class _Passphrase(Exception):
    """The key asked for a passphrase (the service has no terminal to type it on)."""


def _no_passphrase() -> bytes:
    raise _Passphrase


def make_pair(folder: Path) -> None:
    """A new key and self-signed certificate in `folder` (replaced whole)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise EdgerecError("--web-tls auto (web.tls) needs the openssl command to make its certificate (Debian: "
                           "apt install openssl), or give your own with --web-cert FILE --web-key FILE")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))  # 0700
    try:
        run_openssl([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-nodes", "-keyout", str(tmp / KEY_FILE), "-out", str(tmp / CERT_FILE),
                     "-days", str(CERT_DAYS), "-subj", f"/CN=edgerec {socket.gethostname()}"[:64],
                     "-addext", "subjectAltName=" + ",".join(alt_names()),
                     "-addext", "basicConstraints=critical,CA:FALSE",
                     "-addext", "keyUsage=critical,digitalSignature", "-addext", "extendedKeyUsage=serverAuth"])
        os.chmod(tmp / KEY_FILE, 0o600)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp / CERT_FILE, 0o644 & ~umask)
        os.chmod(tmp, 0o755 & ~umask)
        if folder.exists():
            shutil.rmtree(folder)  # an expiring pair (a crash from here on leaves none: made again next start)
        os.replace(tmp, folder)
    except OSError as error:
        raise EdgerecError(f"web certificate: cannot write {folder}: {error.strerror or error}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def alt_names() -> list[str]:
    """The names a browser may use for this device: loopback, its host name and NAME.local (mDNS)."""
    names = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    host = socket.gethostname()
    if host and host != "localhost" and all(c.isalnum() or c in "-." for c in host):
        names += [f"DNS:{host}"] + ([f"DNS:{host}.local"] if "." not in host else [])
    return names


def expires_soon(cert: Path) -> bool:
    """Whether `cert` expires within RENEW_DAYS days (openssl x509 -checkend); a file that will not read: no
    (the checks after this name it)."""
    openssl = shutil.which("openssl")
    if openssl is None or not cert.is_file():
        return False
    done = subprocess.run([openssl, "x509", "-checkend", str(RENEW_DAYS * 86400), "-noout", "-in", str(cert)],
                          capture_output=True, timeout=OPENSSL_TIMEOUT_S, check=False)
    return done.returncode == 1 and b"will expire" in done.stdout


def run_openssl(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise EdgerecError(f"web certificate: openssl took over {OPENSSL_TIMEOUT_S:g} s; stopped") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise EdgerecError(f"web certificate: openssl req failed (exit {done.returncode}): {last}")
