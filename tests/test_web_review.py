"""The review queue through the web app: a live run keeps crops of a region's label changes (raw pixels, also while
someone watches the annotated stream), the routes list them with their result, serve the crop, assign one to a
label (it becomes a training crop) or discard it; /api/status and /metrics count them; the routes are guarded as
the other write routes."""

from __future__ import annotations

import http.client
import re

import cv2
import numpy as np
import pytest
from conftest import COLOURS
from test_web import TOKEN, wait_until
from test_web_teach import FPS, service, write_config

REVIEW = '[review]\nlow_score = 0.0\nafter_change_s = 0.0\nmin_gap_s = 0.0\nduplicate = 0.0\n'
"""Keep the first result after each label change, every one of them."""
LEFT = '[[regions]]\nname = "left"\nbox = [0, 0, 0.5, 1]\n'


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from conftest import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def turns(tmp_path_factory):
    """The left half blue for half a second, then green, then red (10 fps, looping): a label change every 0.5 s."""
    from test_regions import split_clip

    halves = [(colour, "red") for colour in ("blue", "green", "red") for _ in range(5)]
    return split_clip(tmp_path_factory.mktemp("clip") / "turns.mp4", halves, fps=FPS, size=(160, 120))


def jpeg(svc, path: str) -> tuple[int, str, np.ndarray | None]:
    connection = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {svc.token}"} if svc.token else {})
        response = connection.getresponse()
        body = response.read()
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) if response.status == 200 else None
        return response.status, response.getheader("Content-Type", ""), image
    finally:
        connection.close()


def test_label_changes_are_kept_as_raw_crops_then_assigned_or_discarded(tmp_path, turns, tiny):
    config = write_config(tmp_path, turns, tiny, regions=LEFT + REVIEW)
    with service(config) as svc:
        stream = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)  # someone watches: overlay drawn
        stream.request("GET", "/stream.mjpg")
        watching = stream.getresponse()
        try:
            wait_until(lambda: len(svc.request("GET", "/api/review/camera/left")[1]["items"]) >= 4)
        finally:
            watching.close()
            stream.close()
        items = svc.request("GET", "/api/review/camera/left")[1]["items"]
        assert all(item["reason"] == "label change" and item["region"] == "left" for item in items)
        assert {item["label"] for item in items} == {"blue", "green", "red"}
        assert [item["time"] for item in items] == sorted((item["time"] for item in items), reverse=True)
        for item in items[:3]:  # the region's raw pixels, of the colour the result names: no box, no label drawn
            code, kind, crop = jpeg(svc, f"/api/review/camera/left/{item['file']}")
            assert code == 200 and kind == "image/jpeg" and crop.shape[:2] == (120, 80)
            assert np.abs(crop.astype(int) - COLOURS[item["label"]]).max() < 40, item

        status = svc.status()["review"]
        assert status["items"]["camera"]["left"] >= len(items) and status["kept"] >= len(items)
        assert "frame" not in status["items"]["camera"]  # the implicit region is not running
        metrics = svc.request("GET", "/metrics")[1]["text"]
        assert re.search(r'edgerec_review_items\{camera="camera",region="left"\} [1-9]', metrics)
        assert 'edgerec_review_dropped_total{why="duplicate"} 0.0' in metrics

        first, second = items[0]["file"], items[1]["file"]
        code, answer = svc.request("PATCH", f"/api/review/camera/left/{first}", {"label": "sky"})
        assert code == 200 and answer == {"file": first, "label": "sky"}, answer
        assert svc.request("GET", "/api/crops/camera/left")[1]["labels"]["sky"] == [first]  # a training crop now
        code, _, crop = jpeg(svc, f"/api/crops/camera/left/sky/{first}")
        assert code == 200 and crop.shape[:2] == (120, 80)
        assert svc.request("DELETE", f"/api/review/camera/left/{second}")[1] == {"discarded": second}
        listed = [item["file"] for item in svc.request("GET", "/api/review/camera/left")[1]["items"]]
        assert first not in listed and second not in listed
        code, answer = svc.request("DELETE", f"/api/review/camera/left/{second}")
        assert code == 400 and answer["error"] == f"no review item camera/left/{second}"
        assert jpeg(svc, f"/api/review/camera/left/{second}")[0] == 404
        code, answer = svc.request("PATCH", f"/api/review/camera/left/{items[2]['file']}", {"label": "unknown"})
        assert code == 400 and "'unknown' is reserved" in answer["error"]
        code, answer = svc.request("GET", "/api/review/garage/left")
        assert code == 404 and answer["error"].startswith("no camera 'garage'")
    folder = tmp_path / "state" / "review" / "camera" / "left"
    assert (tmp_path / "state" / "teach" / "camera" / "left" / "data" / "sky" / first).is_file()
    assert not (folder / first).exists() and not (folder / second).exists()
    assert not (folder / second.replace(".jpg", ".json")).exists()


def test_review_writes_need_the_token_and_the_same_origin(tmp_path, turns, tiny):
    config = write_config(tmp_path, turns, tiny, token=TOKEN, regions=LEFT + REVIEW)
    with service(config, token=TOKEN) as svc:
        wait_until(lambda: svc.request("GET", "/api/review/camera/left")[1]["items"])
        name = svc.request("GET", "/api/review/camera/left")[1]["items"][0]["file"]
        path = f"/api/review/camera/left/{name}"
        anonymous = type(svc)(svc.port, svc.config, svc.probe)
        assert anonymous.request("GET", "/api/review/camera/left")[0] == 401
        assert anonymous.request("PATCH", path, {"label": "sky"})[0] == 401
        assert anonymous.request("DELETE", path)[0] == 401
        for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            assert svc.request("PATCH", path, {"label": "sky"}, headers)[0] == 403
            assert svc.request("DELETE", path, headers=headers)[0] == 403
        assert name in [item["file"] for item in svc.request("GET", "/api/review/camera/left")[1]["items"]]


@pytest.mark.parametrize(("method", "path", "body", "words"), [
    ("GET", "/api/review/camera/left/..%2F..%2Fconfig.toml", None, ""),
    ("GET", "/api/review/camera/left/config.toml", None, "file 'config.toml' is not valid"),
    ("DELETE", "/api/review/camera/..%2Fteach/1-1.jpg", None, ""),
    ("PATCH", "/api/review/camera/left/1-1.jpg", {"label": "../x"}, "label: String should"),
    ("PATCH", "/api/review/camera/left/1-1.jpg", {"label": "sky", "path": "/etc"}, "path: Extra inputs"),
    ("PATCH", "/api/review/camera/left/1-1.jpg", {"label": "sky"}, "no review item camera/left/1-1.jpg"),
])
def test_bad_review_requests_are_refused_in_one_line(tmp_path, turns, tiny, method, path, body, words):
    config = write_config(tmp_path, turns, tiny, regions=LEFT + '[review]\nenabled = false\n')
    with service(config) as svc:
        code, answer = svc.request(method, path, body)
    assert code in (400, 404, 405, 422), (code, answer)
    assert words in answer.get("error", answer.get("text", "")), answer
    assert not (tmp_path / "state" / "review").exists()
