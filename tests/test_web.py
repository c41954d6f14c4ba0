"""The web preview sink: routes, token, viewer limit, JPEGs only while watched, and the page in Chromium."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_tiny_model, run_cli, run_parser, write_clip

from edge.app.run_args import options_from_args
from edge.core.model import Model
from edge.errors import EdgerecError
from edge.live.capture import SourceOptions, SourceStatus, open_source
from edge.live.result import FrameResult, Result, single
from edge.loop.pipeline import RUN_MODEL, FrameLoop, RunOptions, build_loop, close_all, open_sinks
from edge.web.app import StatusBody
from edge.web.options import TOKEN_ENV, WebOptions, parse_listen
from edge.web.sink import WebSink
from edge.web.state import JpegFeed

LABELS = ("blue", "green", "red")
SIZE = (160, 120)
TOKEN = "s3cret-token-0123456789"
WRITE_PATHS = {"/api/regions/{camera}/{region}", "/api/collect", "/api/crops/{camera}/{region}",
               "/api/crops/{camera}/{region}/{label}/{file}", "/api/train", "/api/accept",
               "/api/models/{camera}/{region}", "/api/review/{camera}/{region}", "/api/review/{camera}/{region}/{file}"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Model:
    return Model.load(make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx"), "cpu", threads=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Two seconds at 25 fps: blue, green, red, each for 16 frames, twice."""
    labels = [label for label in [*LABELS, *LABELS] for _ in range(16)]
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", labels, size=SIZE)


@contextlib.contextmanager
def serving(clip: Path, model: Model, web: WebOptions) -> Iterator[tuple[WebSink, FrameLoop]]:
    """The real frame loop on a looping clip at its own pace, with the web sink, on a thread."""
    options = RunOptions(SourceOptions(str(clip), loop=True), display=False, web=web)
    stop, sinks = threading.Event(), []
    source = open_source(options.source)
    thread = None
    try:
        loop = build_loop(options, {RUN_MODEL: model}, [source], sinks, stop)
        open_sinks(options, loop.cameras, stop, into=sinks)
        loop.attach(sinks)
        thread = threading.Thread(target=loop.run, name="test-frame-loop")
        thread.start()
        yield sinks[0], loop
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        close_all(sinks, [source])


def get(sink: WebSink, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def wait_healthy(sink: WebSink, headers: dict[str, str] | None = None) -> None:
    wait_until(lambda: get(sink, "/healthz", headers)[0] == 200)


@contextlib.contextmanager
def viewer(sink: WebSink, path: str = "/stream.mjpg") -> Iterator[http.client.HTTPResponse]:
    connection = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=10)
    response = None
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        yield response
    finally:
        if response is not None:
            response.close()  # the response holds the socket open until it is closed too
        connection.close()


def mjpeg_parts(response: http.client.HTTPResponse, count: int) -> list[bytes]:
    boundary = re.search(r"boundary=(\S+)", response.getheader("Content-Type")).group(1)
    parts = []
    while len(parts) < count:
        if response.readline().strip() != f"--{boundary}".encode():
            continue
        headers = {}
        while line := response.readline().strip():
            name, value = line.decode().split(":", 1)
            headers[name.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        parts.append(response.read(int(headers["content-length"])))
    return parts


def parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_status_health_metrics_and_the_annotated_stream_while_frames_flow(clip, model):
    with serving(clip, model, WebOptions("127.0.0.1:0", jpeg_fps=20)) as (sink, loop):
        wait_healthy(sink)
        wait_until(lambda: loop.frames >= 5)  # the frame rate needs two frames
        code, headers, body = get(sink, "/api/status")
        status = json.loads(body)
        assert code == 200 and headers["content-type"] == "application/json"
        assert status["label"] in LABELS and 0 < status["score"] <= 1  # smoothed: low while a label switches
        assert status["frames"] > 0 and status["healthy"] and status["fps"] > 0
        assert status["latency_ms"] > 0 and status["inference_ms"] > 0 and status["uptime_s"] >= 0
        assert status["source"]["state"] == "streaming" and status["source"]["reconnects"] == 0

        code, headers, body = get(sink, "/metrics")
        assert code == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        text = body.decode()
        assert "# TYPE edgerec_latency_seconds histogram" in text and "# TYPE edgerec_fps gauge" in text
        metrics = parse_metrics(text)
        assert metrics["edgerec_frames_total"] >= status["frames"] and metrics["edgerec_healthy"] == 1
        assert metrics["edgerec_fps"] > 0 and metrics["edgerec_frames_dropped_total"] == 0
        assert metrics["edgerec_source_reconnects_total"] == 0 and metrics["edgerec_label_changes_total"] >= 1
        buckets = [v for k, v in metrics.items() if k.startswith("edgerec_inference_seconds_bucket")]
        assert buckets == sorted(buckets) and buckets[-1] == metrics["edgerec_inference_seconds_count"] > 0
        assert 0 < metrics["edgerec_inference_seconds_sum"] < metrics["edgerec_latency_seconds_sum"]
        assert sum(k.startswith("edgerec_label_info{label=") for k in metrics) == 1

        with viewer(sink) as response:
            assert response.status == 200
            images = [cv2.imdecode(np.frombuffer(part, np.uint8), cv2.IMREAD_COLOR) for part in
                      mjpeg_parts(response, 3)]
        for image in images:
            assert image.shape == (SIZE[1], SIZE[0], 3)
            assert image[2:8, 2:8].mean() < 0.5 * image[55:65, 75:85].mean()  # the label box darkens its corner
        assert get(sink, "/nothing")[0] == 404
    assert sink.feed.closed


def test_no_jpeg_and_no_overlay_while_nobody_watches_then_a_capped_rate(clip, model):
    with serving(clip, model, WebOptions("127.0.0.1:0", jpeg_fps=5)) as (sink, loop):
        wait_until(lambda: loop.frames >= 15)
        assert sink.feed.encodes == 0 and loop.timers["overlay"].count == 0

        with viewer(sink) as response:
            started = time.monotonic()
            parts = mjpeg_parts(response, 4)
            watched = time.monotonic() - started
            encodes = sink.feed.encodes
        assert 4 <= encodes <= 5 * watched + 2  # 5 per second at most (and the first at once)
        assert loop.timers["overlay"].count > 0 and len(parts) == 4

        wait_until(lambda: sink.feed.viewers == 0)  # noticed at the next send after the viewer left
        frames, encodes = loop.frames, sink.feed.encodes
        wait_until(lambda: loop.frames >= frames + 10)
        assert sink.feed.encodes <= encodes + 1  # one may have been under way


def test_viewers_share_each_jpeg_and_the_limit_answers_503(clip, model):
    with serving(clip, model, WebOptions("127.0.0.1:0", max_clients=2, jpeg_fps=10)) as (sink, _loop):
        wait_healthy(sink)
        with viewer(sink) as first, viewer(sink) as second:
            code, headers, body = get(sink, "/stream.mjpg")
            assert code == 503 and b"2 viewers" in body and headers["retry-after"] == "5"
            before = sink.feed.encodes
            a, b = [], []
            for _ in range(6):
                a += mjpeg_parts(first, 1)
                b += mjpeg_parts(second, 1)
            made = sink.feed.encodes - before
            assert sum(part in b for part in a) >= 4  # the same pictures
            assert made < 1.5 * len(a) + 3  # made once for both, not once per viewer
            assert first.status == second.status == 200 and get(sink, "/api/status")[0] == 200


def test_the_encoder_hands_every_viewer_the_same_jpeg_object():
    feed = JpegFeed(fps=1000, quality=80, max_viewers=3)
    try:
        first, second = feed.join(), feed.join()
        assert first == second == 0
        feed.offer(np.zeros((48, 64, 3), np.uint8))
        one, two = feed.next_jpeg(first, 5.0), feed.next_jpeg(second, 5.0)
        assert one[0] == two[0] == 1 and one[1] is two[1] and feed.encodes == 1
        assert cv2.imdecode(np.frombuffer(one[1], np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
        assert feed.next_jpeg(1, 0.05) == (1, None)  # nothing newer
    finally:
        feed.close()


def test_a_viewer_that_stops_reading_holds_up_neither_the_frame_loop_nor_others():
    sink = WebSink(WebOptions("127.0.0.1:0", jpeg_fps=1000, jpeg_quality=95))
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)  # ~0.5 MB per JPEG
    stuck = socket.socket()
    try:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", sink.port))
        stuck.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")  # ...and never reads
        wait_until(lambda: sink.feed.viewers == 1)
        with viewer(sink) as fast:
            slowest = 0.0
            for i in range(80):  # ~40 MB of JPEGs: far beyond what the stuck socket's buffers hold
                noise[0, 0, 0] = i
                started = time.perf_counter()
                sink.write(noise, result(i))
                slowest = max(slowest, time.perf_counter() - started)
                if i % 8 == 0:
                    mjpeg_parts(fast, 1)  # the other viewer keeps getting pictures
                time.sleep(0.01)
            assert sink.feed.viewers == 2 and sink.feed.encodes >= 20
        assert slowest < 0.25  # a write that waited for the stuck viewer would wait SEND_TIMEOUT_S (10 s)
    finally:
        started = time.monotonic()
        sink.close()
        stuck.close()
    assert time.monotonic() - started < 3


def result(index: int, captured: float | None = None) -> FrameResult:
    captured = time.monotonic() if captured is None else captured
    return single(Result(index, captured, "red", 2, 0.9, np.zeros(3, np.float32), index == 0, True, 12.0, 25.0, 3.0))


def test_a_viewer_who_leaves_while_no_frame_comes_frees_the_slot():
    sink = WebSink(WebOptions("127.0.0.1:0", max_clients=1))
    try:
        with viewer(sink) as response:
            assert response.status == 200 and sink.feed.viewers == 1
            assert get(sink, "/stream.mjpg")[0] == 503
        wait_until(lambda: sink.feed.viewers == 0, timeout=1)
        with viewer(sink) as response:
            assert response.status == 200
    finally:
        sink.close()


def test_healthz_answers_503_before_the_first_frame_and_when_frames_stop_and_metrics_can_be_off():
    sink = WebSink(WebOptions("127.0.0.1:0", stale_after=0.3))
    try:
        code, _, body = get(sink, "/healthz")
        assert code == 503 and body == b"no frame yet\n"
        assert get(sink, "/api/status")[2].startswith(b'{"label": null')
        sink.write(np.zeros((4, 4, 3), np.uint8), result(0))
        assert get(sink, "/healthz")[0] == 200
        time.sleep(0.35)
        code, _, body = get(sink, "/healthz")
        assert code == 503 and body.startswith(b"no frame for")
        status = json.loads(get(sink, "/api/status")[2])
        assert status["fps"] == 0.0 and not status["healthy"] and status["label"] == "red" and status["frames"] == 1
        assert status["source"] is None
    finally:
        sink.close()
    quiet = WebSink(WebOptions("127.0.0.1:0", metrics=False))
    try:
        code, _, body = get(quiet, "/metrics")
        assert code == 404 and b"/metrics" not in body and get(quiet, "/api/status")[0] == 200
    finally:
        quiet.close()


def test_openapi_describes_the_routes_and_the_status_answer_matches_it():
    sink = WebSink(WebOptions("127.0.0.1:0"))
    try:
        sink.write(np.zeros((4, 4, 3), np.uint8), result(0))
        code, headers, body = get(sink, "/openapi.json")
        document = json.loads(body)
        assert code == 200 and headers["content-type"] == "application/json" and document["openapi"] == "3.1.0"
        assert set(document["paths"]) - WRITE_PATHS == {"/", "/stream.mjpg", "/api/status", "/healthz", "/metrics",
                                                        "/openapi.json"}  # the write routes: test_web_teach.py
        answer = document["paths"]["/api/status"]["get"]["responses"]["200"]["content"]["application/json"]
        schema = document["components"]["schemas"]["Status"]
        assert answer["schema"] == {"$ref": "#/components/schemas/Status"} and "security" not in document
        status = json.loads(get(sink, "/api/status")[2])
        assert set(status) == set(schema["properties"]) == set(schema["required"])
        assert StatusBody.model_validate(status).label == "red"
        assert set(document["components"]["schemas"]["SourceStatus"]["properties"]) == set(
            SourceStatus.__dataclass_fields__)
    finally:
        sink.close()


def test_security_headers_and_signal_handlers_left_alone():
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    sink = WebSink(WebOptions("127.0.0.1:0", metrics=False))
    try:
        for route in ("/", "/api/status", "/healthz", "/openapi.json", "/nothing"):
            code, headers, _ = get(sink, route)
            assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer" and "server" not in headers, route
        code, headers, _ = get(sink, "/")
        assert code == 200 and headers["content-security-policy"].startswith("default-src 'none'")
        assert headers["x-frame-options"] == "DENY"
        assert "/metrics" not in json.loads(get(sink, "/openapi.json")[2])["paths"]
    finally:
        sink.close()
    assert {number: signal.getsignal(number) for number in handlers} == handlers


def test_beyond_loopback_a_token_is_required_and_checked_on_every_route(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(EdgerecError, match=f"needs a token \\(--web-token, web.token or \\${TOKEN_ENV}"):
        WebOptions("0.0.0.0:0")
    with pytest.raises(EdgerecError, match="at least 16"):
        WebOptions("0.0.0.0:0", token="short")

    sink = WebSink(WebOptions("0.0.0.0:0", token=TOKEN))
    try:
        for route in ("/", "/stream.mjpg", "/api/status", "/healthz", "/metrics", "/openapi.json", "/nothing"):
            for headers, suffix in (({}, ""), ({"Authorization": "Bearer wrong-token-0123456789"}, ""),
                                    ({}, "?token=wrong"), ({"Authorization": TOKEN}, "")):
                code, answer_headers, _ = get(sink, route + suffix, headers)
                assert code == 401 and answer_headers["www-authenticate"].startswith("Bearer"), (route, headers)
        expected = {"/": 200, "/api/status": 200, "/healthz": 503, "/metrics": 200, "/openapi.json": 200,
                    "/nothing": 404}
        for route, code in expected.items():
            assert get(sink, route, {"Authorization": f"Bearer {TOKEN}"})[0] == code
            assert get(sink, f"{route}?token={TOKEN}")[0] == code
        with viewer(sink, f"/stream.mjpg?token={TOKEN}") as response:
            assert response.status == 200
        document = json.loads(get(sink, f"/openapi.json?token={TOKEN}")[2])
        assert document["security"] == [{"bearer": []}, {"query": []}]
    finally:
        sink.close()


def test_check_config_refuses_a_web_address_beyond_loopback_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = tmp_path / "config.toml"
    config.write_text('[source]\nuri = "demo"\n[web]\nlisten = "0.0.0.0:8080"\n')
    done = run_cli("check-config", str(config))
    assert done.returncode != 0 and "web address 0.0.0.0:8080: serving beyond loopback needs a token" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    config.write_text(f'[source]\nuri = "demo"\n[web]\nlisten = "0.0.0.0:8080"\ntoken = "{TOKEN}"\n')
    done = run_cli("check-config", str(config))
    assert done.returncode == 0 and "web 0.0.0.0:8080 (token set)" in done.stdout


def test_the_token_may_come_from_the_environment_and_guards_loopback_too(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    for listen in ("0.0.0.0:0", "127.0.0.1:0"):
        sink = WebSink(WebOptions(listen))
        try:
            assert get(sink, "/api/status")[0] == 401
            assert get(sink, "/api/status", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        finally:
            sink.close()


def test_listen_addresses_and_bad_values():
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("camera.local:80") == ("camera.local", 80)
    for bad in ("", "127.0.0.1", "127.0.0.1:http", "::1:8080", ":8080", "127.0.0.1:70000"):
        with pytest.raises(EdgerecError, match="is not HOST:PORT"):
            parse_listen(bad)
    for options in ({"max_clients": 0}, {"jpeg_fps": 0}, {"jpeg_quality": 101}, {"stale_after": 0}):
        with pytest.raises(EdgerecError):
            WebOptions(**options)
    with pytest.raises(EdgerecError, match="needs a token"):
        WebSink(WebOptions("camera.local:0"), environ={})
    sink = WebSink(WebOptions("127.0.0.1:0"))
    try:
        with pytest.raises(EdgerecError, match="cannot listen"):
            WebSink(WebOptions(f"127.0.0.1:{sink.port}"))
    finally:
        sink.close()
    if socket.has_ipv6:
        try:
            sink = WebSink(WebOptions("[::1]:0"))
        except EdgerecError:
            return  # IPv6 loopback switched off here
        try:
            assert sink.url == f"http://[::1]:{sink.port}/"
        finally:
            sink.close()


def test_run_flags():
    args = run_parser().parse_args("--source 0 --web 127.0.0.1:8080 --web-fps 4 --web-max-clients 2".split())
    assert options_from_args(args).web == WebOptions("127.0.0.1:8080", None, 2, 4.0)
    args = run_parser().parse_args(f"--source 0 --web 0.0.0.0:8080 --web-token {TOKEN}".split())
    assert options_from_args(args).web == WebOptions("0.0.0.0:8080", TOKEN)
    assert options_from_args(run_parser().parse_args(["--source", "0"])).web is None
    with pytest.raises(EdgerecError, match="--web-fps"):
        options_from_args(run_parser().parse_args("--source 0 --web 127.0.0.1:8080 --web-fps 0".split()))


def chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--window-size=1024,768", "--virtual-time-budget=4000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)")
def test_the_page_shows_the_live_label_in_headless_chromium(clip, model, tmp_path):
    with serving(clip, model, WebOptions("127.0.0.1:0", token=TOKEN)) as (sink, _loop):
        wait_healthy(sink, {"Authorization": f"Bearer {TOKEN}"})
        page = f"{sink.url}?token={TOKEN}"
        dom = chromium("--dump-dom", page, tmp_path=tmp_path)
        assert dom.returncode == 0, dom.stderr[-2000:]
        label = re.search(r'id="label"[^>]*>([^<]*)<', dom.stdout).group(1)
        assert label in LABELS, dom.stdout  # written by the page's script from /api/status
        assert re.search(r'id="state"[^>]*>live<', dom.stdout)
        assert re.search(r'id="fps"[^>]*>\d+\.\d<', dom.stdout)

        screenshot = tmp_path / "web-preview.png"
        shot = chromium(f"--screenshot={screenshot}", page, tmp_path=tmp_path)
        assert shot.returncode == 0, shot.stderr[-2000:]
    image = cv2.imread(str(screenshot))
    assert image.shape == (768, 1024, 3)
    picture = image[60:600, 20:740].reshape(-1, 3).mean(axis=0)  # where the stream shows: one of the colours
    assert picture.max() > 2 * picture.min(), "no live picture on the page"


def test_status_names_the_model_and_its_stored_robustness(tmp_path):
    from conftest import make_tiny_model as tiny_file

    from edge.core.metadata import DatasetInfo, ModelInfo

    info = ModelInfo(labels=["blue", "green", "red"], input_size=(8, 8), crop=1.0, arch="tiny-test", precision="int8",
                     dataset=DatasetInfo("synthetic", "0" * 16, 3, 3),
                     metrics={"robust_clean_top1": 0.9, "robust_mca": 0.72})
    path = tiny_file(tmp_path / "robust.onnx", metadata=info.to_props())
    sink = WebSink(WebOptions("127.0.0.1:0"), models={"": Model.load(path, "cpu", threads=1)})
    try:
        models = json.loads(get(sink, "/api/status")[2])["models"]
    finally:
        sink.close()
    assert models == [{"file": "robust.onnx", "arch": "tiny-test", "precision": "int8", "labels": 3,
                       "metrics": {"robust_clean_top1": 0.9, "robust_mca": 0.72},
                       "robustness": "clean top-1 90.0%, mean corruption accuracy 72.0% (relative drop 20.0%)"}]
