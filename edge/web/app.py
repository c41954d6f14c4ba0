"""The web preview's routes, as a Starlette (ASGI) app; `web_server` serves it, `web.Served` feeds it.

    /              the page (inline CSS and JS, no external assets)
    /stream.mjpg   the annotated frames as MJPEG (multipart/x-mixed-replace), at most `jpeg_fps`;
                   ?camera=NAME picks a camera (default: the first)
    /api/status    JSON (StatusBody below)
    /healthz       200 while every camera's frames flow, else 503 naming those that do not
    /metrics       Prometheus text format 0.0.4 (unless metrics are off)
    /openapi.json  OpenAPI 3.1 description of these routes
    /api/...       regions, collecting crops, the review queue, training, accepting (web_write; docs/teach-web.md,
                   docs/review.md)

Every route, the 404 included, checks the token when one is set (`Authorization: Bearer TOKEN` or
`?token=TOKEN`, compared in constant time) and answers with COMMON_HEADERS. A request that may change
something (any method but GET and HEAD) must also come from this server's own page: an Origin header must be
this server, Sec-Fetch-Site (sent by browsers) must be same-origin; without a token (loopback only) its Host
must be a loopback name, which stops a DNS-rebinding page; and its body may have at most MAX_BODY bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict
from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.schemas import BaseSchemaGenerator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge.live.capture import SourceStatus
from edge.web.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from edge.web.metrics import exposition
from edge.web.state import JpegFeed, Served
from edge.web.write import MAX_BODY, openapi_operation, write_routes

BOUNDARY = "edgerecframe"
COMMON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; connect-src 'self'; "
    "style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
}
TEXT = "text/plain"


def create_app(sink: Served) -> Starlette:
    """The routes, answering from `sink` (its status, health, feed and metrics registry)."""
    wakeups = {name: Wakeup() for name in sink.views}
    for name, view in sink.views.items():
        view.feed.subscribe(wakeups[name].notify)
    first = next(iter(sink.views))

    async def page(_: Request) -> Response:
        """The live picture, label and numbers (inline CSS and JS, no external assets)."""
        return Response(sink.page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def mjpeg(request: Request) -> Response:
        """The annotated frames of one camera (?camera=NAME, default the first) as MJPEG, at most jpeg_fps;
        max_viewers at once per camera."""
        name = request.query_params.get("camera", first)
        if name not in sink.views:
            return text(404, f"404: no camera {name[:64]!r}; cameras: {' '.join(sink.views)}\n")
        return stream(sink.views[name].feed, wakeups[name])

    async def status(_: Request) -> Response:
        """Label, score, frame rate, latency, counters and the source's state."""
        return Response(json.dumps(sink.status()).encode(), media_type="application/json")

    async def healthz(_: Request) -> Response:
        """200 while frames flow (the newest younger than stale_after), else 503."""
        healthy, reason = sink.health()
        return text(200 if healthy else 503, f"{reason}\n")

    async def metrics(_: Request) -> Response:
        """Every edgerec_* metric, Prometheus text format 0.0.4."""
        return Response(exposition(sink.registry), media_type=METRICS_CONTENT_TYPE)

    async def openapi_json(_: Request) -> Response:
        """This description (OpenAPI 3.1)."""
        return Response(json.dumps(document, indent=1).encode(), media_type="application/json")

    async def not_found(_: Request) -> Response:
        return text(404, f"404: routes: {listing}\n")

    routes = [Route("/", page), Route("/stream.mjpg", mjpeg), Route("/api/status", status), Route("/healthz", healthz)]
    if sink.options.metrics:
        routes.append(Route("/metrics", metrics))
    routes.append(Route("/openapi.json", openapi_json))
    routes += write_routes(sink)
    document = openapi_document(routes, bool(sink.token))
    listing = " ".join(dict.fromkeys(route.path for route in routes))
    routes.append(Route("/{rest:path}", not_found, include_in_schema=False))
    return Starlette(routes=routes, middleware=[Middleware(Guard, token=sink.token)])


def text(code: int, body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(body.encode(), code, headers, media_type=TEXT)


class Guard:
    """ASGI middleware: the token on every route, the same-origin and size checks on writes, and COMMON_HEADERS
    on every answer."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *RAW_COMMON_HEADERS]
            await send(message)

        headers = Headers(scope=scope)
        if not authorized(self.token, headers.get("authorization", ""),
                          QueryParams(scope["query_string"]).get("token", "")):
            denied = text(401, "401: a token is required (Authorization: Bearer TOKEN or ?token=)\n",
                          {"WWW-Authenticate": 'Bearer realm="edgerec"'})
            await denied(scope, receive, send_with_headers)
            return
        refusal = write_refusal(scope["method"], headers, self.token) if scope["method"] not in SAFE else None
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


SAFE = frozenset({"GET", "HEAD"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def write_refusal(method: str, headers: Headers, token: str) -> Response | None:
    """Why a request that may change something is refused (403 cross-site, 413 too long), or None."""
    host = headers.get("host", "")
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return text(403, f"403: {method} from another site (Sec-Fetch-Site: {site[:40]}); only this server's "
                    "own page may change things\n")
    origin = headers.get("origin")
    if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
        return text(403, f"403: {method} from origin {origin[:80]!r}, not this server (http://{host[:80]}); only "
                    "this server's own page may change things\n")
    if not token and host_name(host) not in LOOPBACK_NAMES:
        return text(403, f"403: {method} to host {host[:80]!r} without a token; without a token only "
                    "http://127.0.0.1, localhost or [::1] may change things (set web.token to use another name)\n")
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_BODY:
        return text(413, f"413: request body of {length[:20]} bytes; valid: at most {MAX_BODY}\n")
    return None


def host_name(host: str) -> str:
    """The name of a Host header without its port: `127.0.0.1:8080` -> 127.0.0.1, `[::1]:80` -> ::1."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


RAW_COMMON_HEADERS = [(name.lower().encode(), value.encode()) for name, value in COMMON_HEADERS.items()]


def authorized(token: str, header: str, query_token: str) -> bool:
    if not token:
        return True
    given = header[7:] if header.startswith("Bearer ") else query_token
    return hmac.compare_digest(given.encode(), token.encode())


# --- the MJPEG stream ---


class Wakeup:
    """The encoder thread's "a new JPEG" (or "closed"), as something the server's event loop can await."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._future: asyncio.Future[None] | None = None

    def bind(self) -> None:
        """On the loop, before the first wait: from now on notify() reaches it."""
        self.loop = asyncio.get_running_loop()

    def notify(self) -> None:
        """Any thread."""
        loop = self.loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended
                loop.call_soon_threadsafe(self._wake)

    async def wait(self, timeout: float) -> None:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._future), timeout)

    def _wake(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        self._future = None


def stream(feed: JpegFeed, wakeup: Wakeup) -> Response:
    wakeup.bind()
    sequence = feed.join()
    if sequence is None:
        return text(503, f"503: {feed.max_viewers} viewers already watch\n", {"Retry-After": "5"})
    return MjpegResponse(feed, sequence, wakeup)


class MjpegResponse(StreamingResponse):
    """Sends the newest JPEG whenever the socket takes it; the viewer's slot is freed however it ends."""

    def __init__(self, feed: JpegFeed, sequence: int, wakeup: Wakeup) -> None:
        self.feed = feed
        super().__init__(parts(feed, sequence, wakeup), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)  # ends when the viewer leaves (or the feed closes)
        finally:
            self.feed.leave()


async def parts(feed: JpegFeed, sequence: int, wakeup: Wakeup) -> AsyncIterator[bytes]:
    while not feed.closed:
        sequence, jpeg = feed.next_jpeg(sequence, timeout=0)
        if jpeg is None:
            await wakeup.wait(1.0)
            continue
        head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {jpeg.nbytes}\r\n\r\n".encode()
        yield b"".join((head, jpeg, b"\r\n"))  # one write per picture; a slow socket makes the next one newer


# --- OpenAPI ---


class MotionBody(BaseModel):
    """A camera's motion detector on its newest frame (only when a region is triggered by motion)."""

    model_config = ConfigDict(use_attribute_docstrings=True, title="Motion")

    moving: bool
    """Counted motion on the newest frame."""
    area: float
    """Fraction of the picture that moved."""
    recalibrating: bool
    """A global change (lights, IR switch, start) is being re-learnt: no motion is reported meanwhile."""
    boxes: list[list[float]]
    """The moving blobs as x, y, w, h fractions of the frame."""


class RegionBody(BaseModel):
    """One region of a camera ("frame" is the implicit whole-frame region)."""

    model_config = ConfigDict(use_attribute_docstrings=True, title="Region")

    name: str
    box: list[float]
    """x, y, w, h as fractions of the frame."""
    label: str
    """The shown (smoothed) label, or "unknown"."""
    score: float
    trigger: str
    """Why the model last ran: frame, start, motion, settling, interval or keep-alive."""
    age_s: float
    """Seconds between the frame the label was inferred on and the camera's newest frame."""
    latency_ms: float
    """Capture to labelled result, of that inference."""


class CameraBody(BaseModel):
    """One camera."""

    model_config = ConfigDict(use_attribute_docstrings=True, title="Camera")

    fps: float
    frames: int
    label_changes: int
    inference_ms: float | None
    last_frame_age_s: float | None
    healthy: bool
    """True while this camera's frames flow."""
    source: SourceStatus | None
    motion: MotionBody | None
    regions: list[RegionBody]
    viewers: int
    """Viewers of this camera's stream (/stream.mjpg?camera=NAME)."""
    frozen_s: float | None = None
    """Seconds the camera's picture has been bit-identical (a frozen camera: unhealthy after 30 s)."""


class StatusBody(BaseModel):
    """GET /api/status."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True, title="Status")

    label: str | None
    """The shown (smoothed) label; null before the first frame."""
    score: float | None
    """Its smoothed probability, 0-1."""
    fps: float
    """Frames per second reaching the sinks; 0 while frames do not flow."""
    latency_ms: float | None
    """Capture to labelled result, of the newest inference."""
    inference_ms: float | None
    """Model run time of the newest inference."""
    frames: int
    """Frames that reached the sinks."""
    label_changes: int
    """Changes of the shown label."""
    last_frame_age_s: float | None
    """Seconds since the newest frame was captured."""
    healthy: bool
    """True while frames flow (what /healthz answers 200 for)."""
    source: SourceStatus | None
    """The source's state and counters; null when the sink has no source."""
    uptime_s: float
    """Seconds since the web preview started."""
    viewers: int
    """MJPEG viewers now."""
    max_viewers: int
    """MJPEG viewers allowed at once."""
    jpeg_fps: float
    """JPEGs per second at most."""
    cameras: dict[str, CameraBody]
    models: list[dict[str, Any]]
    """The model files the run loaded at start: file, arch, precision, labels, the metrics stored in the file
    (validation top-1, robustness) and a robustness line when the file stores clean and corruption accuracy."""
    """Every camera by name, with its regions; the fields above are the first camera's (and its first
    region's), and healthy is true only while every camera's frames flow."""
    review: dict[str, Any]
    """The review queue: "items" per camera and region, "bytes" and "max_bytes", "kept" and "dropped" (by why:
    duplicate, hourly, bytes, busy, error) since the start, "enabled", "error" (docs/review.md)."""


ANSWERS: dict[str, dict[str, Any]] = {
    "/": {"200": ("text/html", {"type": "string"}, "The page.")},
    "/stream.mjpg": {
        "200": (f"multipart/x-mixed-replace; boundary={BOUNDARY}", {"type": "string", "format": "binary"},
                "JPEG parts until the viewer leaves."),
        "503": (TEXT, {"type": "string"}, "Too many viewers; Retry-After says when to try again."),
    },
    "/api/status": {"200": ("application/json", {"$ref": "#/components/schemas/Status"}, "The newest numbers.")},
    "/healthz": {"200": (TEXT, {"type": "string"}, "Frames flow: `ok: frame N A s ago`."),
                 "503": (TEXT, {"type": "string"}, "`no frame yet` or `no frame for A s`.")},
    "/metrics": {"200": (METRICS_CONTENT_TYPE, {"type": "string"}, "Every edgerec_* metric.")},
    "/openapi.json": {"200": ("application/json", {"type": "object"}, "This description.")},
}  # fmt: skip


def openapi_document(routes: list[BaseRoute], token: bool) -> dict[str, Any]:
    """OpenAPI 3.1 for `routes` (listed by Starlette), the status schema from StatusBody (pydantic)."""
    schema = StatusBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = {"schemas": {**schema.pop("$defs", {}), "Status": schema}}
    paths: dict[str, Any] = {}
    for endpoint in BaseSchemaGenerator().get_endpoints(routes):
        summary = " ".join((endpoint.func.__doc__ or "").split())
        if endpoint.path not in ANSWERS:  # a write route (web_write)
            operation = openapi_operation(endpoint.http_method, endpoint.path, summary, components["schemas"])
            paths.setdefault(endpoint.path, {})[endpoint.http_method] = operation
            continue
        paths.setdefault(endpoint.path, {})[endpoint.http_method] = {
            "summary": summary,
            "responses": {code: {"description": describe, "content": {kind: {"schema": body}}}
                          for code, (kind, body, describe) in ANSWERS[endpoint.path].items()},
        }  # fmt: skip
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "edgerec web preview", "version": "1"},
        "paths": paths,
        "components": components,
    }
    if token:
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "query": {"type": "apiKey", "in": "query", "name": "token"},
        }
        document["security"] = [{"bearer": []}, {"query": []}]
    return document
