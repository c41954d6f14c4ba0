"""A web preview: the live picture and label in a browser, with JSON status, a health check and metrics.

The sink is what the frame loop talks to; `app` holds the routes (Starlette), `server` serves them
(uvicorn on a background thread, guarded against slow clients) and `metrics` writes /metrics
(prometheus-client); they read the sink through `state.Served`. The server listens on loopback by default;
any other address needs a token, which every route then checks.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path

import numpy as np

from edge.errors import EdgerecError
from edge.live.camera import DEFAULT_CAMERA
from edge.live.capture import SourceStatus
from edge.live.result import FrameResult
from edge.sinks.retention import Retention
from edge.web import state
from edge.web.options import TOKEN_ENV, ConfigStore, WebOptions, check_token, parse_listen
from edge.web.state import CameraView, JpegFeed, Stats, camera_status, model_status
from edge.web.tls import TlsFiles, given, self_signed

LOG = logging.getLogger("edgerec.web")
ORIGINS = {"made": "made now", "kept": "made by an earlier start", "given": "yours"}


class WebSink:
    """Serves the preview from a background thread; `write` hands over counters and, while watched, pixels."""

    wants_overlay = True

    def __init__(self, options: WebOptions, source_status: Callable[[], SourceStatus] | None = None,
                 environ: Mapping[str, str] | None = None,
                 cameras: Mapping[str, Callable[[], SourceStatus] | None] | None = None,
                 config: ConfigStore | None = None, request_reload: Callable[[], None] | None = None,
                 models: Mapping[str, object] | None = None, retention: Retention | None = None) -> None:
        """`cameras`: each camera's name and source status (several cameras); None: one camera, `source_status`.
        `config`: the config file the run was started with (None: flags only); `request_reload()` makes the
        run read it (and its model files) again without stopping the cameras (edge.loop.reload). `retention`:
        the sweeper whose counters /metrics shows (None: no retention)."""
        self.config, self.request_reload, self.retention = config, request_reload, retention
        self.models_changed(models or {})
        host, port = parse_listen(options.listen)
        environ = os.environ if environ is None else environ
        self.options = options
        self.token = options.token if options.token is not None else environ.get(TOKEN_ENV, "")
        check_token(self.token, host, options.listen)
        cameras = cameras if cameras else {DEFAULT_CAMERA: source_status}
        self.views = {name: CameraView(name, Stats(), JpegFeed(options.jpeg_fps, options.jpeg_quality,
                                                               options.max_clients), status)
                      for name, status in cameras.items()}  # fmt: skip
        first = next(iter(self.views.values()))
        self.source_status, self.stats, self.feed = first.source_status, first.stats, first.feed
        self.started = time.monotonic()
        self.page = (resources.files("edge") / "assets" / "web" / "index.html").read_bytes()
        from edge.learn.collect import Collector
        from edge.learn.review import ReviewQueue
        from edge.web.trainer import Trainer, state_dir

        self.state = state_dir(options.state_dir, environ)
        self._asked: str | None = None  # the camera whose frame `shows` was last asked about
        self.collector, self.trainer = Collector(self.state / "teach"), Trainer()
        self.review = ReviewQueue(self.state / "review", options.review)
        """Crops worth labelling: a raw sink of its own (edge.loop.pipeline.open_sinks adds it), so that the crops
        it keeps are the camera's pixels, taken before any overlay is drawn."""
        # Imported here, not at the top: a run without --web does not load the ASGI stack (~8 MB of RSS).
        from edge.web import server as web_server
        from edge.web.app import create_app
        from edge.web.metrics import registry_for

        self.registry = registry_for(self)
        try:
            self.tls, context = tls_context(options, self.state)
            sock = web_server.listen(host, port, options.listen)
        except EdgerecError:
            for view in self.views.values():
                view.feed.close()
            self.review.close()
            raise
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self.server = web_server.BackgroundServer(create_app(self), sock, context)
        if self.tls is not None:
            LOG.info("web page at %s (HTTPS only); certificate %s (%s), SHA-256 fingerprint %s", self.url,
                     self.tls.cert, ORIGINS[self.tls.origin], self.tls.fingerprint)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        host = self.address[0]
        return f"{'https' if self.tls else 'http'}://{f'[{host}]' if ':' in host else host}:{self.port}/"

    @property
    def shows_pixels(self) -> bool:
        """Only while someone watches a stream: the frame loop draws the overlay only then."""
        return any(view.feed.viewers for view in self.views.values())

    def models_changed(self, models: Mapping[str, object]) -> None:
        """The model files now running (at start, and after each reload or accept)."""
        self.models = [model_status(model) for model in models.values()]

    def shows(self, camera: str) -> bool:
        """Whether someone watches `camera`'s stream (the frame loop draws that camera's overlay only then)."""
        view = self.views.get(camera)
        if view is None:
            return False
        self._asked = camera  # the frame loop asks before it draws; write() then knows the frame's pixels
        if self.collector.session is not None and self.collector.claim(camera):
            return False  # a crop is due: this frame stays raw (no overlay on the crop)
        return view.feed.viewers > 0

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        view = self.views.get(result.camera)
        if view is None:
            return
        view.stats.update(result)
        view.frozen.look(frame, result.captured)
        asked, self._asked = self._asked == result.camera, None
        if self.collector.session is not None and self.collector.take(frame, result, asked):
            return  # the raw frame went to a crop; viewers get the next, annotated one
        if view.feed.viewers:
            view.feed.offer(frame)

    def close(self) -> None:
        for view in self.views.values():
            view.feed.close()  # viewers see it and end
        self.server.stop()
        self.collector.close()
        self.review.close()
        self.trainer.close()

    # --- what the routes answer (called on the server's thread) ---

    def status(self) -> dict:
        """The first camera's figures at the top level (as before several cameras), every camera under
        "cameras" with its regions and motion."""
        now = time.monotonic()
        cameras = {name: camera_status(view, now, self.options.stale_after) for name, view in self.views.items()}
        first = next(iter(cameras.values()))
        region = first["regions"][0] if first["regions"] else None
        return {
            "label": region["label"] if region else None,
            "score": region["score"] if region else None,
            "fps": first["fps"],
            "latency_ms": region["latency_ms"] if region else None,
            "inference_ms": first["inference_ms"],
            "frames": first["frames"],
            "label_changes": first["label_changes"],
            "last_frame_age_s": first["last_frame_age_s"],
            "healthy": all(camera["healthy"] for camera in cameras.values()),
            "source": first["source"],
            "uptime_s": round(now - self.started, 1),
            "viewers": sum(view.feed.viewers for view in self.views.values()),
            "max_viewers": self.options.max_clients,
            "jpeg_fps": self.options.jpeg_fps,
            "cameras": cameras,
            "models": self.models,
            "review": self.review.status(),
        }

    def health(self) -> tuple[bool, str]:
        """Healthy while every camera's frames flow; otherwise the cameras that do not, named."""
        now, problems, oks = time.monotonic(), [], []
        for name, view in self.views.items():
            last = view.stats.snapshot().last
            where = "" if len(self.views) == 1 else f"camera {name}: "
            if last is None:
                problems.append(f"{where}no frame yet")
                continue
            age, frozen_s = now - last.captured, view.frozen.frozen_s(now)
            if age >= self.options.stale_after:
                problems.append(f"{where}no frame for {age:.1f} s")
            elif frozen_s >= state.FROZEN_AFTER_S:
                problems.append(f"{where}the same picture for {frozen_s:.0f} s (frozen)")
            else:
                oks.append(f"{where}frame {last.frame_index} {age:.2f} s ago")
        if problems:
            return False, "; ".join(problems + oks)
        return True, "ok: " + "; ".join(oks)




def tls_context(options: WebOptions, state_dir: Path) -> tuple[TlsFiles | None, ssl.SSLContext | None]:
    """The certificate files and server context for HTTPS (edge.web.tls), or (None, None) for plain HTTP."""
    if options.tls == "auto":
        return self_signed(state_dir)
    if options.tls_cert and options.tls_key:
        return given(options.tls_cert, options.tls_key)
    return None, None
