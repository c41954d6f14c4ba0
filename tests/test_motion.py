"""edge/live/motion.py on real photos with sensor noise, light drift, a pasted object, lights switching on, a real
clip of people walking (opencv-doc's vtest.avi, when installed); scripts/data/make_still_clip.py round trip."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import EdgerecError
from edge.live.motion import MotionDetector, MotionOptions, MotionState

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "tests" / "data" / "photos"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")

SCRIPT = REPO / "scripts" / "data" / "make_still_clip.py"
spec = importlib.util.spec_from_file_location("make_still_clip", SCRIPT)
msc = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = msc
spec.loader.exec_module(msc)

SIZE = (640, 480)
OBJECT_BOX = (0.55, 0.5, 0.25, 0.3)  # where the orange is pasted, fractions of the frame


def photo(name: str, size: tuple[int, int] = SIZE) -> np.ndarray:
    return msc.cover(cv2.imread(str(PHOTOS / name), cv2.IMREAD_COLOR), size)


def with_object(scene: np.ndarray, box: tuple[float, float, float, float] = OBJECT_BOX) -> np.ndarray:
    return msc.pasted(scene, msc.Paste(PHOTOS / "orange.jpg", box, 0.0))


class Camera:
    """Frames of a still scene as a camera gives them: fresh sensor noise and a brightness drift per frame."""

    def __init__(self, scene: np.ndarray, noise: float = 2.0, drift: float = 0.0, gain: float = 0.0) -> None:
        self.scene = scene.astype(np.float32)
        self.noise, self.drift, self.gain = noise, drift, gain
        self.rng = np.random.default_rng(0)
        self.i = 0
        self._noise = np.empty(scene.shape, np.float32)

    def frame(self, scene: np.ndarray | None = None) -> np.ndarray:
        """The next frame: `drift` levels and `gain` (relative) more light per frame than the last."""
        base = self.scene if scene is None else scene.astype(np.float32)
        self.rng.standard_normal(out=self._noise, dtype=np.float32)
        light = base * (1.0 + self.gain * self.i) + (self.drift * self.i) + self._noise * self.noise
        self.i += 1
        return np.clip(light, 0, 255, out=light).astype(np.uint8)


def false_positives(camera: Camera, detector: MotionDetector, frames: int) -> int:
    states = [detector.update(camera.frame()) for _ in range(frames)]
    assert not any(s.recalibrating for s in states[MotionOptions().recalibrate_frames :])
    return sum(s.moving for s in states)


@pytest.mark.parametrize("name", ["coffee.jpg", "baboon.jpg", "chelsea.jpg"])
def test_still_noisy_scene_with_slow_drift_reports_no_motion(name):
    # 300 frames (20 s at 15 fps), sensor noise sigma 2, +0.1 level and +0.05% light per frame: 0 false positives.
    # 320x240 keeps the test quick; the noise reaches the 160-pixel analysis frame just the same (2x2 samples).
    camera = Camera(photo(name, (320, 240)), noise=2.0, drift=0.1, gain=0.0005)
    assert false_positives(camera, MotionDetector(), 300) == 0


def test_fast_exposure_change_is_compensated_not_motion():
    # The light falls by 1% of the first frame's per frame for 40 frames (a cloud, the camera's exposure):
    # a plain running average would lag 100 * (1 - 0.98**40) = 55 levels behind on a pixel at 200, far over
    # the threshold; the gain compensation follows it.
    camera = Camera(photo("coffee.jpg"), noise=2.0, gain=-0.01)
    assert false_positives(camera, MotionDetector(), 40) == 0


def test_noisy_camera_within_threshold_is_still():
    camera = Camera(photo("chelsea.jpg", (320, 240)), noise=6.0)
    assert false_positives(camera, MotionDetector(), 100) == 0


def warmed(scene: np.ndarray, options: MotionOptions | None = None) -> tuple[MotionDetector, Camera]:
    detector, camera = MotionDetector(options), Camera(scene, noise=2.0, drift=0.1)
    for _ in range(30):
        assert not detector.update(camera.frame()).moving
    return detector, camera


def seen(detector: MotionDetector, camera: Camera, scene: np.ndarray) -> MotionState:
    """Show `scene` until the detector analyses a frame (a still scene is analysed every `still_every`-th
    frame): the first analysed state, which must come within `still_every` frames."""
    for _ in range(detector.options.still_every):
        state = detector.update(camera.frame(scene))
        if state.analysed:
            return state
        assert not state.moving and not detector.touches((0.0, 0.0, 1.0, 1.0))
    raise AssertionError(f"no frame analysed in {detector.options.still_every}")


def test_pasted_object_is_motion_in_its_box_only():
    scene = photo("coffee.jpg")
    detector, camera = warmed(scene)
    state = seen(detector, camera, with_object(scene))
    assert state.moving and not state.recalibrating
    x, y, w, h = OBJECT_BOX
    assert 0.5 * w * h < state.area < 1.5 * w * h
    (bx, by, bw, bh), *_ = sorted(state.boxes, key=lambda b: -b[2] * b[3])
    assert abs(bx - x) < 0.03 and abs(by - y) < 0.03 and abs(bw - w) < 0.05 and abs(bh - h) < 0.05
    assert detector.touches(OBJECT_BOX)
    assert detector.touches((x + w / 2, y + h / 2, 0.05, 0.05))  # a small box inside the object
    assert detector.touches((x - 0.1, y - 0.1, 0.15, 0.15))  # overlapping its corner
    assert not detector.touches((0.0, 0.0, 0.4, 0.4))
    assert not detector.touches((0.05, 0.6, 0.3, 0.3))
    assert not detector.touches((1.0, 1.0, 0.2, 0.2)) and not detector.touches((x, y, 0.0, 0.1))  # outside, empty
    mask = detector.mask
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255} and not mask.flags.writeable
    assert mask.shape == (120, 160)


def test_still_object_fades_into_the_background():
    scene = photo("coffee.jpg", (320, 240))
    detector, camera = warmed(scene)
    changed = with_object(scene)
    assert seen(detector, camera, changed).moving
    moving = [detector.update(camera.frame(changed)).moving for _ in range(200)]
    assert all(moving[:20]) and not any(moving[-50:])
    assert not detector.touches(OBJECT_BOX)


def test_object_is_found_while_light_changes_fast():
    scene = photo("baboon.jpg")
    detector, camera = MotionDetector(), Camera(scene, noise=2.0, gain=-0.01)
    for _ in range(30):
        detector.update(camera.frame())
    assert seen(detector, camera, with_object(scene)).moving
    assert detector.touches(OBJECT_BOX) and not detector.touches((0.0, 0.0, 0.3, 0.3))


def test_lights_on_recalibrate_then_motion_works_again():
    scene = photo("chelsea.jpg")
    options = MotionOptions()
    detector, camera = warmed(scene, options)
    lit = np.clip(scene.astype(np.float32) * 1.8 + 40, 0, 255).astype(np.uint8)  # lights on: brighter, clipped
    states = [seen(detector, camera, lit)] + [detector.update(camera.frame(lit))
                                              for _ in range(options.recalibrate_frames + 9)]
    assert not any(s.moving for s in states)
    assert all(s.recalibrating for s in states[: options.recalibrate_frames])
    assert not any(s.recalibrating for s in states[options.recalibrate_frames :])
    assert detector.mask is not None and not detector.mask.any()
    assert not detector.touches((0.0, 0.0, 1.0, 1.0))
    state = seen(detector, camera, with_object(lit))
    assert state.moving and detector.touches(OBJECT_BOX) and not detector.touches((0.0, 0.0, 0.4, 0.4))


def test_lights_off_and_ir_switch_recalibrate():
    scene = photo("coffee.jpg")
    detector, camera = warmed(scene)
    ir = cv2.cvtColor(cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    ir = cv2.convertScaleAbs(255 - ir, alpha=0.5, beta=20)  # IR: different reflectances, darker
    state = seen(detector, camera, ir)
    assert state.recalibrating and not state.moving


def test_sudden_small_light_change_is_not_motion_nor_recalibration():
    scene = photo("coffee.jpg")
    detector, camera = warmed(scene)
    darker = (scene * 0.9).astype(np.uint8)  # 10% less light at once: 20 levels on a pixel at 200
    states = [detector.update(camera.frame(darker)) for _ in range(10)]
    assert not any(s.moving or s.recalibrating for s in states)


def test_blob_under_min_area_does_not_count():
    scene = photo("coffee.jpg")
    detector, camera = warmed(scene, MotionOptions(min_area=0.02))
    small = (0.1, 0.1, 0.05, 0.05)  # 0.25% of the frame
    state = seen(detector, camera, with_object(with_object(scene, small), OBJECT_BOX))
    assert state.moving and len(state.boxes) == 1
    assert detector.touches(OBJECT_BOX) and not detector.touches(small)
    assert not detector.mask[10:20, 15:25].any()  # the small blob is gone from the mask too


def test_first_frames_recalibrate_and_size_change_resets():
    options = MotionOptions(recalibrate_frames=3)
    detector = MotionDetector(options)
    assert detector.mask is None
    camera = Camera(photo("coffee.jpg"), noise=2.0)
    assert [detector.update(camera.frame()).recalibrating for _ in range(5)] == [True, True, True, False, False]
    assert detector.mask.shape == (120, 160)
    wide = Camera(photo("coffee.jpg", (1280, 720)), noise=2.0)
    states = [detector.update(wide.frame()) for _ in range(5)]
    assert [s.recalibrating for s in states] == [True, True, True, False, False]
    assert not any(s.moving for s in states)
    assert detector.mask.shape == (90, 160)


@pytest.mark.parametrize("every", [1, 2, 3])
def test_a_still_scene_is_analysed_every_nth_frame_and_every_frame_once_it_moves(every):
    scene = photo("coffee.jpg", (320, 240))
    detector, camera = MotionDetector(MotionOptions(still_every=every)), Camera(scene, noise=2.0, drift=0.1)
    states = [detector.update(camera.frame()) for _ in range(60)]
    live = states[MotionOptions().recalibrate_frames :]
    assert all(s.analysed for s in states[: MotionOptions().recalibrate_frames])  # learning: every frame
    assert not any(s.moving for s in live)
    assert sum(s.analysed for s in live) in (len(live) // every, len(live) // every + 1)
    assert seen(detector, camera, with_object(scene)).moving
    moving = [detector.update(camera.frame(with_object(scene))) for _ in range(10)]
    assert all(s.analysed and s.moving for s in moving)  # while it moves (here: is new), every frame


def test_background_follows_at_the_same_speed_per_frame_whatever_still_every():
    # A patch 10 levels brighter at once (under the threshold: not motion): the running average closes the gap
    # by (1 - alpha) per frame, whether it sees every frame or every 3rd with the raised weight.
    scene = photo("coffee.jpg", (320, 240))
    brighter = scene.copy()
    brighter[100:140, 100:160] = np.clip(scene[100:140, 100:160].astype(np.int16) + 10, 0, 255)
    gaps = []
    for every in (1, 3):
        detector = MotionDetector(MotionOptions(still_every=every))
        for image in [scene] * 30 + [brighter] * 31:
            assert not detector.update(image).moving
        rows, cols = slice(50, 70), slice(50, 80)  # the patch at analysis size (160x120)
        gaps.append(float(np.mean(detector._gray_f[rows, cols] - detector._avg[rows, cols])))
    expected = 10 * (1 - MotionOptions().alpha) ** 30  # 31 frames shown, the last analysed one compared
    assert abs(gaps[1] - gaps[0]) < 0.1 * gaps[0] and all(abs(gap - expected) < 0.2 * expected for gap in gaps), (
        gaps, expected)


def test_small_frames_are_analysed_at_their_own_size():
    detector = MotionDetector(MotionOptions(width=160))
    detector.update(np.zeros((60, 80, 3), np.uint8))
    assert detector.mask.shape == (60, 80)


def test_not_a_bgr_frame_is_refused():
    with pytest.raises(ValueError, match="BGR uint8"):
        MotionDetector().update(np.zeros((48, 64), np.uint8))


@pytest.mark.parametrize(("key", "value"), [
    ("width", 8), ("threshold", 0), ("threshold", 256), ("min_area", 1.0), ("min_area", -0.1), ("alpha", 0.0),
    ("alpha", 1.5), ("lightning", 0.0), ("resize", "cubic"), ("blur", 4), ("blur", 0), ("dilate", -1),
    ("recalibrate_frames", 0), ("width", 160.0), ("still_every", 0), ("still_every", 11),
])
def test_bad_option_names_the_key(key, value):
    with pytest.raises(EdgerecError, match=f"^motion {key} .*valid: "):
        MotionOptions(**{key: value})


@pytest.mark.skipif(not VTEST.exists(), reason="opencv-doc's vtest.avi is not installed")
def test_people_walking_in_a_real_clip_are_motion():
    capture = cv2.VideoCapture(str(VTEST))
    detector = MotionDetector()
    states = []
    while len(states) < 150:
        ok, frame = capture.read()
        assert ok
        states.append(detector.update(frame))
    capture.release()
    live = states[MotionOptions().recalibrate_frames :]
    assert sum(s.moving for s in live) >= 0.95 * len(live)  # people walk through the hall in every frame
    assert not any(s.recalibrating for s in live)
    assert all(s.area < 0.3 for s in live)


def test_make_still_clip_round_trip(tmp_path):
    paste = msc.Paste(PHOTOS / "orange.jpg", OBJECT_BOX, 1.0)
    clip = msc.make_still_clip(tmp_path / "still.avi", PHOTOS / "coffee.jpg", seconds=2, fps=15, size=(320, 240),
                               noise_sigma=2.0, drift=0.5, paste=paste)
    assert clip.frames == 30 and clip.paste_frame == 15 and clip.size == (320, 240)
    assert [p.name for p in tmp_path.iterdir()] == ["still.avi"]
    capture = cv2.VideoCapture(str(clip.path))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    assert len(frames) == 30 and frames[0].shape == (240, 320, 3)
    noise = np.std(frames[1].astype(np.float32) - frames[0]) / np.sqrt(2)
    assert 1.0 < noise < 3.0  # MJPG keeps the sensor noise
    detector = MotionDetector()
    moving = [i for i, frame in enumerate(frames) if detector.update(frame).moving]
    assert moving and moving[0] == clip.paste_frame
    assert detector.touches(OBJECT_BOX) and not detector.touches((0.0, 0.0, 0.4, 0.4))


def test_make_still_clip_writes_mp4(tmp_path):
    paste = msc.Paste(PHOTOS / "orange.jpg", OBJECT_BOX, 0.5)
    clip = msc.make_still_clip(tmp_path / "still.mp4", PHOTOS / "baboon.jpg", seconds=1, fps=10, size=(320, 240),
                               paste=paste)
    capture = cv2.VideoCapture(str(clip.path))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == clip.frames == 10
    detector = MotionDetector()
    moving = [detector.update(capture.read()[1]).moving for _ in range(clip.frames)]
    assert moving.index(True) == clip.paste_frame == 5


def test_make_still_clip_refuses_an_unknown_container(tmp_path):
    with pytest.raises(ValueError, match="must end in"):
        msc.make_still_clip(tmp_path / "still.mkv", PHOTOS / "coffee.jpg", seconds=1)
