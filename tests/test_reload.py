"""Hot reload (SIGHUP, `systemctl reload`): new regions, triggers and model files without dropping a frame."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO, make_tiny_model, write_clip
from test_regions import INSTANT, LEFT, RIGHT, regions, split_clip

from edge.core.model import Model, default_model_path
from edge.errors import EdgerecError
from edge.live.capture import SourceOptions
from edge.live.regions import RegionOptions
from edge.live.result import FrameResult
from edge.loop.pipeline import RunOptions, run
from edge.web.options import WebOptions

FPS = 10.0


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Model:
    return Model.load(make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx"), "cpu", threads=1)


class Probe:
    """A sink that notes when each frame arrived and which regions it had."""

    wants_overlay = False

    def __init__(self) -> None:
        self.frames: list[tuple[int, float, tuple[str, ...]]] = []

    def write(self, frame, result: FrameResult) -> None:
        self.frames.append((result.frame_index, time.monotonic(), tuple(r.region for r in result.regions)))

    def close(self) -> None:
        pass


def test_a_reload_swaps_regions_in_without_a_gap_and_a_bad_one_is_refused(tmp_path, model, caplog):
    clip = split_clip(tmp_path / "clip.mp4", [("blue", "red")] * 20, fps=FPS)
    first = RunOptions(SourceOptions(str(clip), loop=True), display=False, regions=regions(("left", LEFT)))
    right = RegionOptions("right", RIGHT, model=str(default_model_path()), smoothing=INSTANT)  # loads on reload
    second = RunOptions(SourceOptions(str(clip), loop=True), display=False, threads=1,
                        regions=(*regions(("left", LEFT)), right))
    bad = RunOptions(SourceOptions(str(clip), loop=True), display=False, web=WebOptions("127.0.0.1:0"))
    configs = iter([second, bad])

    def read() -> RunOptions:
        options = next(configs)
        if options.web is not None:
            raise EdgerecError("config.toml: web.listen: just a stand-in for a file that no longer loads")
        return options

    stop, requested, probe = threading.Event(), threading.Event(), Probe()
    threading.Timer(1.0, requested.set).start()
    threading.Timer(2.0, requested.set).start()
    threading.Timer(3.0, stop.set).start()
    with caplog.at_level("INFO"):
        summary = run(first, stop, model=model, reload=read, reload_requested=requested, extra_sinks=[probe])

    indices = [index for index, _, _ in probe.frames]
    assert indices == list(range(indices[0], indices[0] + len(indices)))  # not one frame lost
    gaps = [b - a for (_, a, _), (_, b, _) in zip(probe.frames, probe.frames[1:])]
    assert max(gaps) <= 2 / FPS, max(gaps)
    shapes = [names for _, _, names in probe.frames]
    assert shapes[0] == ("left",) and shapes[-1] == ("left", "right")
    switched = shapes.index(("left", "right"))
    assert all(names == ("left",) for names in shapes[:switched]) and switched > 5
    assert summary.cameras["camera"].regions["left"].label_changes == 1  # kept its label across the reload
    assert summary.cameras["camera"].regions["right"].inferences > 3  # the ImageNet model, loaded meanwhile
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("reloaded: 1 camera(s), 2 region(s)") for m in messages)
    assert any("reload refused: config.toml: web.listen" in m for m in messages)


def test_a_change_only_a_restart_applies_is_refused(tmp_path, model, caplog):
    from edge.loop.reload import check_restartless

    clip = write_clip(tmp_path / "clip.mp4", ["blue"] * 5)
    old = RunOptions(SourceOptions(str(clip)), display=False)
    check_restartless(old, RunOptions(SourceOptions(str(clip)), display=False, trigger="motion", regions=regions(
        ("left", LEFT))))  # fmt: skip
    with pytest.raises(EdgerecError, match="events changed, which needs a restart"):
        check_restartless(old, RunOptions(SourceOptions(str(clip)), display=False, events="e.jsonl"))


def test_sighup_reloads_the_config_file_of_a_running_edgerec(tmp_path):
    clip = split_clip(tmp_path / "clip.mp4", [("blue", "red")] * 20, fps=FPS)
    model = make_tiny_model(tmp_path / "tiny.onnx")
    config = tmp_path / "config.toml"
    head = f'[source]\nuri = "{clip}"\nloop = true\n[model]\npath = "{model}"\nthreads = 1\n'
    config.write_text(head + '[[regions]]\nname = "left"\nbox = [0, 0, 0.5, 1]\n')
    process = subprocess.Popen([sys.executable, "-m", "edge.app.cli", "run", "--config", str(config), "--no-display",
                                "--events", "-"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3.0)
        config.write_text(head + '[[regions]]\nname = "left"\nbox = [0, 0, 0.5, 1]\n'
                          '[[regions]]\nname = "right"\nbox = [0.5, 0, 0.5, 1]\n')
        os.kill(process.pid, signal.SIGHUP)
        time.sleep(2.0)
        config.write_text(head + '[[regions]]\nname = "left"\nbox = [0, 0, 1.5, 1]\n')  # outside the frame
        os.kill(process.pid, signal.SIGHUP)
        time.sleep(1.5)
        assert process.poll() is None, "the process ended"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["region"], e["label"]) for e in events] == [("left", "blue"), ("right", "red")]
    assert "reloaded: 1 camera(s), 2 region(s)" in err
    assert "reload refused:" in err and "regions[0].box: is outside the frame" in err


def test_a_run_that_reaches_the_end_of_its_file_ends_at_once_with_reload_on(tmp_path, model):
    clip = write_clip(tmp_path / "clip.mp4", ["blue"] * 10)
    options = RunOptions(SourceOptions(str(clip), paced=False), display=False)
    started = time.monotonic()
    summary = run(options, model=model, reload=lambda: options, reload_requested=threading.Event())
    assert summary.stopped_by == "end" and time.monotonic() - started < 5



def test_sinks_that_name_the_model_files_hear_of_a_reload(tmp_path, model):
    """The web page lists the running model files: after a reload (or an accept) it must name the new ones."""
    from edge.live.capture import open_source
    from edge.loop.pipeline import RUN_MODEL, build_loop
    from edge.loop.reload import Update

    class Naming(Probe):
        models: list[str] = []

        def models_changed(self, models) -> None:
            self.models = sorted(models)

    clip = write_clip(tmp_path / "clip.mp4", ["blue"] * 10)
    options = RunOptions(SourceOptions(str(clip)), display=False)
    newer = RunOptions(SourceOptions(str(clip)), display=False,
                       regions=(RegionOptions("right", RIGHT, model="other.onnx"),))
    sink, source = Naming(), open_source(options.source)
    try:
        loop = build_loop(options, {RUN_MODEL: model}, [source], [sink], threading.Event())
        loop.apply(Update(newer, {RUN_MODEL: model, "other.onnx": model}, {}))
    finally:
        source.close()
    assert sink.models == [RUN_MODEL, "other.onnx"]


def test_a_reload_naming_a_damaged_model_file_is_refused_and_the_run_goes_on(tmp_path, model, caplog):
    clip = write_clip(tmp_path / "clip.mp4", ["blue"] * 10, fps=FPS)
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(default_model_path().read_bytes()[:200_000])  # cut short, as a failed copy leaves it
    first = RunOptions(SourceOptions(str(clip), loop=True), display=False)
    second = RunOptions(SourceOptions(str(clip), loop=True), display=False,
                        regions=(RegionOptions("left", LEFT, model=str(damaged)),))
    stop, requested = threading.Event(), threading.Event()
    threading.Timer(0.5, requested.set).start()
    threading.Timer(4.0, stop.set).start()
    with caplog.at_level("INFO"):
        summary = run(first, stop, model=model, reload=lambda: second, reload_requested=requested)
    assert summary.stopped_by == "stop" and summary.frames > 30 and summary.label == "blue"
    refused = [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]
    assert len(refused) == 1 and "damaged.onnx" in refused[0]
