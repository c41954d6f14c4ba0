"""The web app's write routes: regions into the config file, collecting crops, training, accepting, rolling back,
and their security (token, same origin, names, body size); frames keep flowing across an accept."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import COLOURS, make_tiny_model
from test_reload import Probe as RegionProbe
from test_web import TOKEN, wait_until

from edge.app import config_write
from edge.app.config import load_config, run_options
from edge.app.config_write import TomlConfig
from edge.errors import EdgerecError
from edge.loop.pipeline import RunOptions, run
from edge.web.write import MAX_BODY

FPS = 10.0


class Probe(RegionProbe):
    """test_reload's probe, also noting each frame's labels."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[tuple[str, ...]] = []

    def write(self, frame, result) -> None:
        super().write(frame, result)
        self.labels.append(tuple(r.label for r in result.regions))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(tmp_path: Path, clip: Path, model: Path | None, token: str = "", regions: str = "",
                 tls: bool = False) -> Path:
    """A config playing `clip` with the web page on a free loopback port (over HTTPS with `tls`: web.tls auto,
    the certificate in STATE/tls)."""
    config = tmp_path / "config.toml"
    config.write_text(f'# my camera\n[source]\nuri = "{clip}"\nloop = true\n'
                      + (f'[model]\npath = "{model}"\nthreads = 1\n' if model else "[model]\nthreads = 1\n")
                      + "[recognition]\nema = 1.0\nswitch_frames = 1\n[display]\nwindow = false\n"
                      f'[web]\nlisten = "127.0.0.1:{free_port()}"\nstate_dir = "{tmp_path / "state"}"\n'
                      + (f'token = "{token}"\n' if token else "") + ('tls = "auto"\n' if tls else "") + regions)
    return config


@dataclasses.dataclass
class Service:
    port: int
    config: Path
    probe: Probe
    token: str = ""
    cert: Path | None = None
    """HTTPS: the server's certificate, trusted alone."""

    def request(self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> tuple[int, dict]:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=20, context=ssl.create_default_context(cafile=str(self.cert))) \
            if self.cert else http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            sent = {"Content-Type": "application/json"} if body is not None or raw is not None else {}
            if self.token:
                sent["Authorization"] = f"Bearer {self.token}"
            sent.update(headers or {})
            data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            payload = response.read()
            kind = response.getheader("Content-Type", "")
            return response.status, json.loads(payload) if kind.startswith("application/json") else {
                "text": payload.decode(errors="replace")}
        finally:
            connection.close()

    def status(self) -> dict:
        return self.request("GET", "/api/status")[1]

    def regions(self) -> dict[str, dict]:
        return {r["name"]: r for r in self.status()["cameras"]["camera"]["regions"]}


@contextlib.contextmanager
def service(config: Path, token: str = "") -> Iterator[Service]:
    """`edgerec run --config CONFIG` as the CLI runs it (reload on request), on a thread, with a probe sink."""

    def read() -> RunOptions:
        return dataclasses.replace(run_options(load_config(config)), config=TomlConfig(str(config)))

    options = read()
    stop, requested, probe = threading.Event(), threading.Event(), Probe()
    thread = threading.Thread(target=run, args=(options, stop), kwargs={
        "reload": read, "reload_requested": requested, "extra_sinks": [probe]}, name="test-run")
    thread.start()
    port = int(options.web.listen.rpartition(":")[2])
    cert = Path(options.web.state_dir or "") / "tls" / "cert.pem" if options.web.tls == "auto" else None
    svc = Service(port, config, probe, token, cert)
    try:
        wait_until(lambda: probe.frames and svc.status()["frames"], timeout=20)  # the web sink has had one too
        yield svc
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def halves(tmp_path_factory) -> Path:
    """Left half blue, right half red, at 10 fps."""
    from test_regions import split_clip

    return split_clip(tmp_path_factory.mktemp("clip") / "halves.mp4", [("blue", "red")] * 20, fps=FPS, size=(160, 120))


# --- the config file ---


def test_a_drawn_region_is_saved_to_the_config_with_a_backup_and_runs_after_the_reload(tmp_path, halves, tiny):
    config = write_config(tmp_path, halves, tiny)
    before = config.read_text()
    with service(config) as svc:
        assert set(svc.regions()) == {"frame"}
        code, answer = svc.request("PUT", "/api/regions/camera/door", {"box": [0.5, 0, 0.5, 1]})
        assert code == 200 and answer["reloading"] is True, answer
        wait_until(lambda: "door" in svc.regions())
        wait_until(lambda: svc.regions()["door"]["label"] == "red")
        code, _ = svc.request("PUT", "/api/regions/camera/door", {"box": [0, 0, 0.5, 1]})  # moved
        assert code == 200
        wait_until(lambda: svc.regions()["door"]["label"] == "blue")
    assert (tmp_path / "config.toml.bak").read_text().count("door") == 1  # the file before the move
    assert before.startswith("# my camera")  # the first backup was the user's own file...
    loaded = load_config(config)  # ...and the new one loads, with every key the user set
    assert [(r.name, r.box) for r in loaded.regions] == [("door", [0.0, 0.0, 0.5, 1.0])]
    assert loaded.model.path == str(tiny) and loaded.recognition.switch_frames == 1 and loaded.source.loop


def test_without_a_config_file_a_region_cannot_be_saved(halves, tiny):
    from test_web import serving

    from edge.core.model import Model
    from edge.web.options import WebOptions

    with serving(halves, Model.load(tiny, "cpu", threads=1), WebOptions("127.0.0.1:0")) as (sink, _):
        svc = Service(sink.port, Path("unused"), Probe())
        code, answer = svc.request("PUT", "/api/regions/camera/door", {"box": [0, 0, 0.5, 1]})
    assert code == 409 and "no config file" in answer["error"]


def test_a_config_that_would_not_load_is_never_written(tmp_path, halves, tiny):
    config = write_config(tmp_path, halves, tiny)
    before = config.read_text()
    data = config_write.read(config)
    data["recognition"]["trigger"] = "interval"  # without an interval: does not load
    with pytest.raises(EdgerecError, match="as it would be written; left unchanged.*needs an interval"):
        config_write.write(config, data)
    with pytest.raises(EdgerecError, match="no camera 'garage'"):
        config_write.set_region(config, "garage", "door", [0, 0, 1, 1])
    assert config.read_text() == before and not (tmp_path / "config.toml.bak").exists()


def test_a_read_only_config_folder_is_one_line_and_leaves_the_file(tmp_path, halves, tiny, monkeypatch):
    """As under the unit with a drop-in ReadOnlyPaths=/etc/edgerec (simulated: root ignores folder modes)."""
    config = write_config(tmp_path, halves, tiny)
    before = config.read_text()

    def read_only(*_, **__):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("edge.files.tempfile.mkstemp", read_only)
    with pytest.raises(EdgerecError) as refused:
        config_write.set_region(config, "camera", "door", [0, 0, 0.5, 1])
    assert str(refused.value) == (f"{config}: cannot write it: Read-only file system (under systemd the unit or a "
                                  "drop-in keeps the folder read-only; the shipped unit has "
                                  "ReadWritePaths=/etc/edgerec)")
    assert config.read_text() == before and not (tmp_path / "config.toml.bak").exists()


COMMENTED = """\
# edgerec on the garage Pi -- my notes stay here
[[cameras]]
name = "garage"   # the door camera
source = "{clip}"

  # motion first, then the model
  [cameras.motion]
  threshold = 30  # tuned in March

  [[cameras.regions]]
  name = "door"
  box = [0.25, 0.1, 0.3, 0.6]  # moved from the page
  trigger = "motion"

  [[cameras.regions]]
  name = "bins"
  box = [0.6, 0.5, 0.3, 0.4]
  model = 'bins-v1.onnx'  # single quotes kept

[[cameras]]
name = "yard"
source = "{clip}"
regions = [{{ name = "gate", box = [0.0, 0.0, 0.5, 0.5] }}]  # inline, on purpose

[model]
path = "{model}"  # the base model
threads = 1

[web]
listen = "127.0.0.1:8080"
# token = "later"
"""


def changed_lines(before: str, after: str) -> list[str]:
    """The lines difflib says were removed (-) or added (+), without the file headers."""
    import difflib

    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("---", "+++"))]


def test_a_page_save_keeps_every_comment_and_changes_only_its_keys(tmp_path, halves, tiny):
    config = tmp_path / "config.toml"
    config.write_text(COMMENTED.format(clip=halves, model=tiny))
    store = TomlConfig(str(config))
    comments = [line.partition("#")[2] for line in config.read_text().splitlines() if "#" in line]

    before = config.read_text()
    store.set_region("garage", "door", [0.5, 0.25, 0.25, 0.5])  # move: one key
    assert changed_lines(before, config.read_text()) == [
        "-  box = [0.25, 0.1, 0.3, 0.6]  # moved from the page",
        "+  box = [0.5, 0.25, 0.25, 0.5]  # moved from the page"]
    assert (tmp_path / "config.toml.bak").read_text() == before

    before = config.read_text()
    store.set_region_model("garage", "door", "door-v1.onnx")  # a key added to its table
    assert changed_lines(before, config.read_text()) == ['+  model = "door-v1.onnx"']  # indented as its neighbours
    before = config.read_text()
    store.set_region_model("garage", "bins", "")  # rollback: the key removed, its comment with it
    assert changed_lines(before, config.read_text()) == ["-  model = 'bins-v1.onnx'  # single quotes kept"]
    before = config.read_text()
    store.set_region("yard", "gate", [0.5, 0.5, 0.5, 0.5])  # inside an inline array
    assert changed_lines(before, config.read_text()) == [
        '-regions = [{ name = "gate", box = [0.0, 0.0, 0.5, 0.5] }]  # inline, on purpose',
        '+regions = [{ name = "gate", box = [0.5, 0.5, 0.5, 0.5] }]  # inline, on purpose']
    before = config.read_text()
    store.set_region("garage", "porch", [0.0, 0.0, 0.25, 0.25])  # a new [[cameras.regions]] table
    assert all(line.startswith("+") for line in changed_lines(before, config.read_text()))

    after = config.read_text()
    assert [c for c in comments if c != " single quotes kept"] == \
        [line.partition("#")[2] for line in after.splitlines() if "#" in line]  # every other comment, in order
    loaded = load_config(config)
    garage = {r.name: r for r in loaded.cameras[0].regions}
    assert garage["door"].box == [0.5, 0.25, 0.25, 0.5] and garage["door"].model == "door-v1.onnx"
    assert not garage["bins"].model and garage["porch"].box == [0.0, 0.0, 0.25, 0.25]
    assert loaded.cameras[0].motion.threshold == 30 and loaded.cameras[1].regions[0].box == [0.5, 0.5, 0.5, 0.5]
    assert store.region_model("garage", "door") == "door-v1.onnx" and store.region_model("yard", "gate") == ""


def test_the_first_region_of_a_camera_is_added_as_a_table(tmp_path, halves, tiny):
    config = write_config(tmp_path, halves, tiny)
    before = config.read_text()
    config_write.set_region(config, "camera", "door", [0, 0, 0.5, 1])
    added = changed_lines(before, config.read_text())
    assert added == ["+", "+[[regions]]", '+name = "door"', "+box = [0.0, 0.0, 0.5, 1.0]"] or \
        added == ["+[[regions]]", '+name = "door"', "+box = [0.0, 0.0, 0.5, 1.0]", "+"]
    assert [(r.name, r.box) for r in load_config(config).regions] == [("door", [0.0, 0.0, 0.5, 1.0])]


def test_openapi_describes_the_write_routes_with_their_bodies():
    from test_web import WRITE_PATHS

    from edge.web.options import WebOptions
    from edge.web.sink import WebSink

    sink = WebSink(WebOptions("127.0.0.1:0", token=TOKEN))
    try:
        svc = Service(sink.port, Path("unused"), Probe(), TOKEN)
        document = svc.request("GET", "/openapi.json")[1]
    finally:
        sink.close()
    assert WRITE_PATHS <= set(document["paths"]) and document["security"]
    put = document["paths"]["/api/regions/{camera}/{region}"]["put"]
    ref = put["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rpartition("/")[2]]
    assert schema["properties"]["box"]["minItems"] == 4 and schema["additionalProperties"] is False
    assert [p["name"] for p in put["parameters"]] == ["camera", "region"]
    assert set(document["paths"]["/api/collect"]) == {"get", "post", "delete"}
    assert "worker process" in document["paths"]["/api/train"]["post"]["summary"]


def test_the_state_directory_is_the_config_key_else_systemds_else_the_users(tmp_path):
    from edge.web.trainer import state_dir

    assert state_dir("/srv/edgerec", {"STATE_DIRECTORY": "/var/lib/edgerec"}) == Path("/srv/edgerec")
    assert state_dir(None, {"STATE_DIRECTORY": "/var/lib/edgerec:/var/lib/other"}) == Path("/var/lib/edgerec")
    assert state_dir(None, {"XDG_STATE_HOME": "/home/me/.state"}) == Path("/home/me/.state/edgerec")
    config = write_config(tmp_path, tmp_path / "clip.mp4", None)
    assert run_options(load_config(config)).web.state_dir == str(tmp_path / "state")


# --- security ---


def test_writes_are_refused_without_the_token_and_from_another_origin(tmp_path, halves, tiny):
    config = write_config(tmp_path, halves, tiny, token=TOKEN)
    before = config.read_text()
    with service(config, token=TOKEN) as svc:
        box = {"box": [0, 0, 0.5, 1]}
        anonymous = dataclasses.replace(svc, token="")
        assert anonymous.request("PUT", "/api/regions/camera/door", box)[0] == 401
        assert anonymous.request("POST", "/api/train", {"camera": "camera", "region": "frame"})[0] == 401
        wrong = dataclasses.replace(svc, token="x" * len(TOKEN))
        assert wrong.request("DELETE", "/api/collect")[0] == 401
        here = f"http://127.0.0.1:{svc.port}"
        for headers in ({"Origin": "http://evil.example"}, {"Origin": f"http://127.0.0.1:{svc.port + 1}"},
                        {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site", "Origin": here},
                        {"Origin": "null"}):
            code, answer = svc.request("PUT", "/api/regions/camera/door", box, headers)
            assert code == 403 and "only this server's own page" in answer["text"], (headers, answer)
            assert svc.request("POST", "/api/train", {"camera": "camera", "region": "frame"}, headers)[0] == 403
        assert config.read_text() == before and svc.request("GET", "/api/train")[1]["state"] == "idle"
        code, _ = svc.request("PUT", "/api/regions/camera/door", box, {"Origin": here, "Sec-Fetch-Site": "same-origin"})
        assert code == 200  # the page itself
    assert "door" in config.read_text()


def test_without_a_token_writes_need_a_loopback_host_name(tmp_path, halves, tiny):
    """A DNS-rebinding page (evil.example resolving to 127.0.0.1) is same-origin for the browser: its Host is not."""
    config = write_config(tmp_path, halves, tiny)
    with service(config) as svc:
        box = {"box": [0, 0, 0.5, 1]}
        code, answer = svc.request("PUT", "/api/regions/camera/door", box, {
            "Host": f"evil.example:{svc.port}", "Origin": f"http://evil.example:{svc.port}"})
        assert code == 403 and "without a token" in answer["text"]
        assert svc.request("GET", "/api/status", headers={"Host": f"evil.example:{svc.port}"})[0] == 200  # reads
        assert svc.request("PUT", "/api/regions/camera/door", box, {"Host": f"localhost:{svc.port}"})[0] == 200


@pytest.mark.parametrize(("method", "path", "body", "words"), [
    ("PUT", "/api/regions/camera/..", {"box": [0, 0, 1, 1]}, "region '..' is not valid"),
    ("PUT", "/api/regions/camera/a%2F..%2F..%2Fx", {"box": [0, 0, 1, 1]}, ""),
    ("PUT", "/api/regions/camera/" + "a" * 65, {"box": [0, 0, 1, 1]}, "1-64 letters"),
    ("PUT", "/api/regions/camera/door", {"box": [0, 0, 1.5, 1]}, "outside the frame"),
    ("PUT", "/api/regions/camera/door", {"box": [0, 0, 1, 1], "model": "/etc/passwd"}, "model: Extra inputs"),
    ("POST", "/api/collect", {"camera": "camera", "region": "frame", "label": "../../etc"}, "label: String should"),
    ("POST", "/api/collect", {"camera": "camera", "region": "frame", "label": "x" * 65}, "label: String should"),
    ("POST", "/api/collect", {"camera": "camera", "region": "frame", "label": ".hidden"}, "label: String should"),
    ("GET", "/api/crops/camera/frame/cat/..%2F..%2F..%2Fconfig.toml", None, ""),
    ("GET", "/api/crops/camera/frame/cat/config.toml", None, "file 'config.toml' is not valid"),
    ("DELETE", "/api/crops/camera/frame/cat/1-1.jpg%00", None, "is not valid"),
    ("DELETE", "/api/crops/camera/frame/..%2Fmodels/1-1.jpg", None, ""),
    ("PATCH", "/api/crops/camera/frame/cat/1-1.jpg", {"label": "../dog"}, "label: String should"),
    ("PUT", "/api/models/camera/frame", {"version": "../../x"}, "version"),
])
def test_traversal_and_oversized_names_are_refused(tmp_path, halves, tiny, method, path, body, words):
    config = write_config(tmp_path, halves, tiny, regions="[review]\nenabled = false\n")  # nothing written at all
    (tmp_path / "state" / "teach" / "camera" / "frame" / "data" / "cat").mkdir(parents=True)
    before = config.read_text()
    with service(config) as svc:
        code, answer = svc.request(method, path, body)
    assert code in (400, 404, 405, 422), (code, answer)
    assert words in answer.get("error", answer.get("text", "")), answer
    assert config.read_text() == before
    assert [p.name for p in (tmp_path / "state").rglob("*")] == ["teach", "camera", "frame", "data", "cat"]


def test_bodies_are_bounded_and_must_be_json(tmp_path, halves, tiny):
    config = write_config(tmp_path, halves, tiny)
    with service(config) as svc:
        big = json.dumps({"box": [0, 0, 1, 1], "pad": "x" * MAX_BODY}).encode()
        code, answer = svc.request("PUT", "/api/regions/camera/door", raw=big)
        assert code == 413 and f"at most {MAX_BODY}" in answer["text"]
        chunked = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)  # no Content-Length
        chunked.request("PUT", "/api/regions/camera/door", body=iter([b'{"box": [0, 0, 1, 1], "pad": "',
                                                                      b"x" * MAX_BODY, b'"}']),
                        headers={"Content-Type": "application/json"}, encode_chunked=True)
        response = chunked.getresponse()
        assert response.status == 413 and b"over 4096 bytes" in response.read()
        chunked.close()
        form = svc.request("PUT", "/api/regions/camera/door", raw=b"box=0,0,1,1",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form[0] == 415 and "send JSON" in form[1]["error"]
    assert "door" not in config.read_text()


# --- collecting, training, accepting ---


def test_collected_crops_are_the_regions_raw_pixels_and_can_be_listed_relabelled_and_deleted(tmp_path, halves, tiny):
    config = write_config(tmp_path, halves, tiny, regions='[[regions]]\nname = "left"\nbox = [0, 0, 0.5, 1]\n')
    with service(config) as svc:
        stream = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)  # someone watches: overlay drawn
        stream.request("GET", "/stream.mjpg")
        viewer = stream.getresponse()
        try:
            code, answer = svc.request("POST", "/api/collect", {"camera": "camera", "region": "nope", "label": "sky"})
            assert code == 409 and "no region 'nope' running" in answer["error"]
            code, answer = svc.request("POST", "/api/collect", {"camera": "camera", "region": "left", "label": "sky",
                                                                "every_s": 0.2})
            assert code == 201 and answer["active"], answer
            wait_until(lambda: len(svc.request("GET", "/api/crops/camera/left")[1]["labels"].get("sky", [])) >= 4)
            svc.request("DELETE", "/api/collect")
            assert svc.request("GET", "/api/collect")[1]["active"] is False
        finally:
            viewer.close()
            stream.close()
        files = svc.request("GET", "/api/crops/camera/left")[1]["labels"]["sky"]
        connection = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
        connection.request("GET", f"/api/crops/camera/left/sky/{files[0]}")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "image/jpeg"
        crop = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
        connection.close()
        assert crop.shape[:2] == (120, 80)  # the left half of 160 x 120
        assert np.abs(crop.astype(int) - COLOURS["blue"]).max() < 40  # plain blue: no box, no label drawn on it
        assert svc.request("PATCH", f"/api/crops/camera/left/sky/{files[0]}", {"label": "sea"})[0] == 200
        assert svc.request("DELETE", f"/api/crops/camera/left/sky/{files[1]}")[0] == 200
        assert svc.request("DELETE", f"/api/crops/camera/left/sky/{files[1]}")[0] == 400  # gone
        labels = svc.request("GET", "/api/crops/camera/left")[1]["labels"]
    assert labels["sea"] == [files[0]] and labels["sky"] == files[2:]
    data = tmp_path / "state" / "teach" / "camera" / "left" / "data"
    assert sorted(p.name for p in (data / "sky").iterdir()) == sorted(files[2:])  # edgerec teach's layout


def test_collecting_pauses_while_a_recording_draws_the_overlay_on_every_frame(tmp_path, halves, tiny):
    from edge.learn.collect import PAUSED

    regions = f'[[regions]]\nname = "left"\nbox = [0, 0, 0.5, 1]\n[recording]\npath = "{tmp_path / "rec.avi"}"\n'
    config = write_config(tmp_path, halves, tiny, regions=regions)
    with service(config) as svc:
        body = {"camera": "camera", "region": "left", "label": "sky", "every_s": 0.1}
        assert svc.request("POST", "/api/collect", body)[0] == 201
        wait_until(lambda: svc.request("GET", "/api/collect")[1]["error"] == PAUSED)
        time.sleep(0.5)
        assert svc.request("GET", "/api/collect")[1]["saved"] == 0
    assert not (tmp_path / "state" / "teach" / "camera" / "left" / "data").exists()


def test_an_accept_swaps_the_taught_model_in_without_a_gap_and_rollback_goes_back(tmp_path, halves, tiny):
    config = write_config(tmp_path, halves, tiny, regions='[[regions]]\nname = "left"\nbox = [0, 0, 0.5, 1]\n')
    candidate = tmp_path / "state" / "teach" / "camera" / "left" / "candidate.onnx"
    candidate.parent.mkdir(parents=True)
    with service(config) as svc:
        wait_until(lambda: svc.regions()["left"]["label"] == "blue")
        assert svc.request("POST", "/api/accept", {"camera": "camera", "region": "left"})[1]["error"].endswith(
            "nothing to accept; train first")
        for version, names in ((1, ["sky", "grass", "fire"]), (2, ["azure", "lime", "crimson"])):
            make_tiny_model(candidate, labels=names)  # what a training leaves (a real one: the browser test)
            code, answer = svc.request("POST", "/api/accept", {"camera": "camera", "region": "left"})
            assert code == 200 and answer["version"] == version, answer
            wait_until(lambda names=names: svc.regions()["left"]["label"] == names[0])
        models = svc.request("GET", "/api/models/camera/left")[1]
        assert [v["version"] for v in models["versions"]] == [1, 2] and models["current"].endswith("v2.onnx")
        assert svc.request("PUT", "/api/models/camera/left", {"version": 1})[0] == 200  # rollback
        wait_until(lambda: svc.regions()["left"]["label"] == "sky")
        assert svc.request("PUT", "/api/models/camera/left", {"version": None})[0] == 200  # the base model
        wait_until(lambda: svc.regions()["left"]["label"] == "blue")
        assert svc.request("PUT", "/api/models/camera/left", {"version": 7})[1]["error"].endswith("valid: v1, v2")
        frames, labels = list(svc.probe.frames), list(svc.probe.labels)
    indices = [index for index, _, _ in frames]
    assert indices == list(range(indices[0], indices[0] + len(indices)))  # not one frame lost (the clip loops)
    gaps = [b - a for (_, a, _), (_, b, _) in zip(frames, frames[1:])]
    assert max(gaps) <= 2 / FPS, max(gaps)
    shown = [names[0] for names in labels if names]
    assert [label for n, label in enumerate(shown) if n == 0 or shown[n - 1] != label] == [
        "blue", "sky", "azure", "sky", "blue"]  # four swaps inside that unbroken run of frames
    kept = tmp_path / "state" / "teach" / "camera" / "left" / "models"
    assert sorted(p.name for p in kept.iterdir()) == ["v1.onnx", "v2.onnx"] and not candidate.exists()


def test_train_runs_teach_in_a_worker_process_and_reports_the_interval(tmp_path, halves):
    """Real photos as crops of two labels; the embedded model as the base (no [model] path)."""
    data = tmp_path / "state" / "teach" / "camera" / "frame" / "data"
    photo_crops(data)
    config = write_config(tmp_path, halves, None)
    with service(config) as svc:
        code, answer = svc.request("POST", "/api/train", {"camera": "camera", "region": "frame"})
        assert code == 202 and answer["state"] == "running", answer
        code, answer = svc.request("POST", "/api/train", {"camera": "camera", "region": "frame"})
        assert code == 409 and "one at a time" in answer["error"]
        wait_until(lambda: svc.request("GET", "/api/train")[1]["state"] != "running", timeout=60)
        status = svc.request("GET", "/api/train")[1]
        assert status["state"] == "done", status
        result = status["result"]
        assert result["labels"] == ["cup", "monkey"] and result["val_n"] == 2 and result["val_top1"] == 1.0
        assert 0 < result["val_low95"] < 1.0 == result["val_high95"]
        assert status["done"] == status["total"] == 8 and status["wall_s"] > result["seconds"]
    assert (data.parent / "candidate.onnx").is_file()


# --- under the hardened unit's system call filters ---


def photo_crops(data: Path) -> None:
    """Four crops each of two real photos, as a region's collected crops."""
    from conftest import PHOTOS

    for label, photo in (("monkey", "baboon.jpg"), ("cup", "coffee.jpg")):
        image = cv2.imread(str(PHOTOS / photo))
        (data / label).mkdir(parents=True)
        h, w = image.shape[:2]
        for n in range(4):
            cv2.imwrite(str(data / label / f"{1000 + n}-{n}.jpg"),
                        image[n * h // 16: h - n * h // 16, n * w // 16: w - n * w // 16])


@pytest.mark.skipif(not __import__("test_systemd_unit").have_libseccomp(), reason="libseccomp.so.2 not found")
def test_draw_train_and_accept_work_under_the_units_seccomp_filters(tmp_path, halves):
    """`edgerec run` under SystemCallFilter=, MemoryDenyWriteExecute=, RestrictAddressFamilies= of
    systemd/edgerec.service (tests/unit_sandbox.py): the config rewrite, the spawned and niced training
    process, the hard-linked version and the reload are not killed by the filters."""
    import subprocess
    import sys

    from conftest import REPO
    from test_systemd_unit import SANDBOX, UNIT

    photo_crops(tmp_path / "state" / "teach" / "camera" / "door" / "data")
    config = write_config(tmp_path, halves, None)
    port = int(load_config(config).web.listen.rpartition(":")[2])
    process = subprocess.Popen([sys.executable, str(SANDBOX), str(UNIT), "--", sys.executable, "-m", "edge.app.cli",
                                "run", "--config", str(config)], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE,
                               text=True)
    svc = Service(port, config, Probe())
    try:
        wait_until(lambda: process.poll() is None and _answers(svc), timeout=30)
        assert svc.request("PUT", "/api/regions/camera/door", {"box": [0.0, 0.0, 0.5, 1.0]})[0] == 200
        wait_until(lambda: "door" in svc.regions(), timeout=15)
        assert svc.request("POST", "/api/train", {"camera": "camera", "region": "door"})[0] == 202
        wait_until(lambda: svc.request("GET", "/api/train")[1]["state"] != "running", timeout=60)
        assert svc.request("GET", "/api/train")[1]["state"] == "done", svc.request("GET", "/api/train")[1]
        assert svc.request("POST", "/api/accept", {"camera": "camera", "region": "door"})[0] == 200
        wait_until(lambda: svc.regions()["door"]["label"] in ("cup", "monkey"), timeout=15)
        assert process.poll() is None
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err[-2000:]
    assert "models/v1.onnx" in config.read_text()


def _answers(svc: Service) -> bool:
    try:
        return svc.request("GET", "/healthz")[0] == 200
    except OSError:
        return False
