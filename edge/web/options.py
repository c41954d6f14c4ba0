"""The web page's settings (WebOptions), read by the config without loading the ASGI stack, and what the page
is handed to change the config file it was started with (ConfigStore)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from edge.errors import EdgerecError
from edge.learn.review import ReviewOptions

TOKEN_ENV = "EDGEREC_WEB_TOKEN"
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class WebOptions:
    listen: str = "127.0.0.1:8080"
    """HOST:PORT to serve on ([::1]:PORT for IPv6, PORT alone for loopback); port 0 picks a free one."""
    token: str | None = None
    """Required on every route when `listen` is not a loopback address; None: $EDGEREC_WEB_TOKEN."""
    max_clients: int = 4
    """MJPEG viewers at once; more get 503."""
    jpeg_fps: float = 5.0
    """JPEGs per second at most, made only while someone watches (a 1080p JPEG costs ~10 ms of CPU)."""
    jpeg_quality: int = 80
    """JPEG quality, 1-100."""
    stale_after: float = 5.0
    """Seconds without a frame after which /healthz answers 503."""
    metrics: bool = True
    """Serve /metrics (Prometheus text format); False: 404 there."""
    state_dir: str | None = None
    """Where collected crops and taught models go (docs/teach-web.md); None: $STATE_DIRECTORY (systemd's
    StateDirectory=), else ~/.local/state/edgerec."""
    review: ReviewOptions = ReviewOptions()
    """The review queue: crops worth labelling the camera met, kept under the state directory (docs/review.md)."""
    tls: str = "off"
    """"auto": HTTPS with a self-signed certificate made once in STATE/tls (edge.web.tls); "off": plain HTTP,
    unless `tls_cert` and `tls_key` are given."""
    tls_cert: str | None = None
    """The user's certificate (PEM) to serve HTTPS with; needs `tls_key`."""
    tls_key: str | None = None
    """The private key (PEM, no passphrase) of `tls_cert`."""

    def __post_init__(self) -> None:
        host, _ = parse_listen(self.listen)
        check_token(self.token if self.token is not None else os.environ.get(TOKEN_ENV, ""), host, self.listen)
        if self.max_clients < 1:
            raise EdgerecError(f"web max-clients {self.max_clients} is not positive; valid: an integer >= 1")
        if not self.jpeg_fps > 0:
            raise EdgerecError(f"web jpeg-fps {self.jpeg_fps} is not positive; valid: a number > 0")
        if not 1 <= self.jpeg_quality <= 100:
            raise EdgerecError(f"web jpeg-quality {self.jpeg_quality} is out of range; valid: 1-100")
        if not self.stale_after > 0:
            raise EdgerecError(f"web stale-after {self.stale_after} is not positive; valid: seconds > 0")
        check_tls(self.tls, self.tls_cert, self.tls_key)

    @property
    def https(self) -> bool:
        return self.tls == "auto" or bool(self.tls_cert)


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or `PORT` (loopback) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address needs brackets to be told from its port
    if not host or not port.isdigit() or int(port) > 65535:
        raise EdgerecError(f"web address {listen!r} (--web, web.listen) is not HOST:PORT; valid: e.g. "
                           "127.0.0.1:8080, [::1]:8080, 8080 (loopback) or 0.0.0.0:8080 (every interface, needs a "
                           "token)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def check_token(token: str, host: str, listen: str) -> None:
    if not token and not is_loopback(host):
        raise EdgerecError(f"web address {listen}: serving beyond loopback needs a token (--web-token, web.token "
                           f"or ${TOKEN_ENV}; python3 -c 'import secrets; print(secrets.token_urlsafe())' makes "
                           "one), or listen on 127.0.0.1")
    if token and len(token) < MIN_TOKEN_CHARS:
        raise EdgerecError(f"web token is {len(token)} characters; valid: at least {MIN_TOKEN_CHARS} "
                           "(python3 -c 'import secrets; print(secrets.token_urlsafe())' makes one)")


def check_tls(tls: str, cert: str | None, key: str | None) -> None:
    if tls not in ("off", "auto"):
        raise EdgerecError(f"web tls {tls!r} (--web-tls, web.tls); valid: auto (a self-signed certificate made "
                           "once), off (plain HTTP, or your own certificate with --web-cert and --web-key)")
    if bool(cert) != bool(key):
        raise EdgerecError("web tls: a certificate needs its key and a key its certificate; valid: both "
                           "--web-cert FILE and --web-key FILE (web.tls_cert, web.tls_key), or neither")
    if tls == "auto" and cert:
        raise EdgerecError(f"web tls: --web-tls auto makes its own certificate but --web-cert {cert} is given; "
                           "valid: one of the two")


class ConfigStore(Protocol):
    """The config file a run was started with, as the page's write routes change it (edge.app.config_write
    implements it; the web app never imports the config)."""

    path: str

    def set_region(self, camera: str, region: str, box: Sequence[float]) -> None:
        """Add or move a region's box."""

    def set_region_model(self, camera: str, region: str, model: str) -> None:
        """Set the model file a region runs ("" for the run's own model)."""

    def region_model(self, camera: str, region: str) -> str:
        """The model file a region runs ("" for the run's own model)."""

    def model_path(self) -> str | None:
        """The run's own model file; None for the embedded default."""
