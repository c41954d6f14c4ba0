"""edge.app.config: the TOML file, its one-line errors, `edgerec check-config`, `edgerec config --defaults`,
flags over the file, and `edgerec run --config` end to end (events written, systemd told READY)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from conftest import REPO, make_tiny_model, run_cli, run_parser, write_clip

from edge.app.config import (
    Config,
    defaults_toml,
    load_config,
    parse_config,
    run_options,
    with_overrides,
)
from edge.app.run_args import FLAG_KEYS, options_from_args
from edge.errors import EdgerecError
from edge.sinks.mqtt import MqttOptions
from edge.web.options import WebOptions

VALID_TOP = ("source, model, recognition, motion, regions, cameras, overlay, display, events, snapshots, "
             "recording, retention, web, review, mqtt")


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def check(path: Path) -> subprocess.CompletedProcess:
    return run_cli("check-config", str(path))


def test_a_typo_is_one_line_naming_the_key_and_the_valid_keys(tmp_path):
    path = write(tmp_path, 'sourc = 0\n[model]\ndevice = "cpu"\n')
    done = check(path)
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr == f"edgerec: error: {path}: unknown key 'sourc' (valid keys: {VALID_TOP})\n"


@pytest.mark.parametrize("text,message", [
    ("[source]\nfps = -3", "source.fps: must be > 0, got -3"),
    ("[source]\nfsp = 3", "unknown key 'source.fsp' (valid keys in [source]: uri, width, height, fps, mjpg, "
                          "decode_scale, paced, loop, read_timeout, open_timeout)"),
    ("[source]\nread_timeout = inf", "source.read_timeout: must be a finite number, got inf"),
    ("[source]\nwidth = 1280.5", "source.width: must be an integer, got 1280.5"),
    ('[source]\nloop = "yes"', 'source.loop: must be true or false, got "yes"'),
    ("[source]\nuri = -1", "source.uri: must be a string in quotes, got -1"),
    ('model = "m.onnx"', 'model: must be a table ([model] with keys path, device, threads, fast_int8, spinning), '
                         'got "m.onnx"'),
    ('[model]\ndevice = "gpu"', "model.device: unknown device 'gpu'; valid: auto, cpu, cuda, tensorrt, openvino, "
                                "coreml, directml, qnn, xnnpack (cuda:N / tensorrt:N pick a GPU, openvino:CPU|GPU|NPU "
                                'an OpenVINO device), got "gpu"'),
    ("[recognition]\nema = 1.5", "recognition.ema: must be <= 1, got 1.5"),
    ("[recognition]\nswitch_frames = 0\nmin_score = 2", "recognition.switch_frames: must be >= 1, got 0 "
                                                         "(and 1 more problem)"),
    ("[display]\nwindow = 1", 'display.window: must be true, false or "auto", got 1'),
    ('[web]\nlisten = "0.0.0.0"', 'web.listen: must be ADDRESS:PORT with a port from 1 to 65535, e.g. '
                                  '"127.0.0.1:8080", got "0.0.0.0"'),
    ('[mqtt]\nport = "1883"', 'mqtt.port: must be an integer, got "1883"'),
    ("[mqtt]\npassword = 12345", "mqtt.password: must be a string in quotes, got (hidden)"),
    ("[source]\ndecode_scale = 3", "source.decode_scale: must be one of 1, 2, 4, 8, got 3"),
    ('[source]\nuri = "clip.mp4"\ndecode_scale = 2', "source.decode_scale: must be 1 for source 'clip.mp4': above 1 "
                                                    "it applies to V4L2 cameras and network streams sending MJPEG "
                                                    "only, got 2"),
    ("[source]\nmjpg = false\ndecode_scale = 4", "source.decode_scale: must be 1 while mjpg is off: above 1 it "
                                                  "scales the camera's MJPG frames, got 4"),
])  # fmt: skip
def test_bad_values_name_the_key_path_and_what_is_valid(tmp_path, text, message):
    path = write(tmp_path, text + "\n")
    with pytest.raises(EdgerecError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: {message}"


def test_toml_syntax_errors_name_the_line(tmp_path):
    path = write(tmp_path, '[source]\nuri = "demo"\nfps = \n')
    done = check(path)
    assert done.returncode != 0 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"edgerec: error: {path}: invalid TOML: ") and "line 3" in done.stderr


def test_missing_and_undecodable_files_are_one_line_errors(tmp_path):
    with pytest.raises(EdgerecError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    path = tmp_path / "latin1.toml"
    path.write_bytes('[events]\npath = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(EdgerecError, match="not UTF-8"):
        load_config(path)


def test_printed_defaults_pass_check_config_and_load_to_the_schema_defaults(tmp_path):
    printed = run_cli("config", "--defaults")
    assert printed.returncode == 0 and printed.stdout == defaults_toml()
    path = write(tmp_path, printed.stdout)
    done = check(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"{path}: ok" and "embedded ImageNet" in done.stdout
    assert load_config(path) == Config()
    assert load_config(write(tmp_path, printed.stdout.replace("# fps = 15", "fps = 15"))).source.fps == 15


def test_every_setting_is_described_and_shown_in_the_defaults():
    text = defaults_toml()
    for name, section in Config.model_fields.items():
        if typing.get_origin(section.annotation) is list:  # [[regions]], [[cameras]]: keys and an example
            table = typing.get_args(section.annotation)[0]
            assert table.__doc__ and f"\n# [[{name}]]\n" in text
            assert all(f"#   {key}: " in text and field.description for key, field in table.model_fields.items())
            continue
        assert section.annotation.__doc__ and f"\n[{name}]\n" in text
        for key, field in section.annotation.model_fields.items():
            assert field.description, f"{name}.{key} has no description"
            default = getattr(getattr(Config(), name), key)
            shown = f"\n{key} = " if default is not None else f"\n# {key} = {field.examples[0]}"
            assert shown in text, f"{name}.{key} is missing from the printed defaults"


def test_device_is_checked_like_the_command_line_flag():
    assert parse_config({"model": {"device": "cuda:1"}}, "c.toml").model.device == "cuda:1"
    with pytest.raises(EdgerecError, match="model.device: device 'cuda:x': the part after ':' is a GPU index"):
        parse_config({"model": {"device": "cuda:x"}}, "c.toml")


def test_source_can_be_given_as_a_string_or_camera_number():
    assert parse_config({"source": 0}).source.uri == "0"
    assert parse_config({"source": "rtsp://cam.local/s1"}).source.uri == "rtsp://cam.local/s1"
    assert parse_config({"source": {"uri": 2, "fps": 15}}).source.uri == "2"


def test_run_options_carry_every_setting(tmp_path):
    config = load_config(write(tmp_path, """
        [source]
        uri = "/dev/video2"
        width = 1280
        height = 720
        fps = 30
        mjpg = false
        read_timeout = 2.5
        [model]
        path = "m.onnx"
        device = "cpu"
        threads = 2
        [recognition]
        infer_fps = 5
        ema = 0.3
        switch_margin = 0.2
        switch_frames = 4
        min_score = 0.4
        [overlay]
        top_k = 3
        stats = false
        [display]
        window = false
        [events]
        path = "e.jsonl"
        [snapshots]
        dir = "snaps"
        [recording]
        path = "out.mp4"
    """))
    options = run_options(config)
    source = options.source
    assert (source.uri, source.width, source.height, source.fps, source.mjpg) == ("/dev/video2", 1280, 720, 30, False)
    assert source.read_timeout == 2.5 and source.open_timeout == 10.0 and source.paced and not source.loop
    assert source.decode_scale == 1
    assert (options.model, options.device, options.threads, options.infer_fps) == ("m.onnx", "cpu", 2, 5)
    smoothing = options.smoothing
    assert (smoothing.alpha, smoothing.margin, smoothing.frames, smoothing.min_score) == (0.3, 0.2, 4, 0.4)
    assert options.overlay.top_k == 3 and not options.overlay.stats
    assert (options.display, options.events, options.snapshots, options.out) == (False, "e.jsonl", "snaps", "out.mp4")
    defaults = run_options(Config())
    assert defaults.model is None and defaults.display is None and defaults.events is None and defaults.out is None


def test_web_and_mqtt_sections_become_their_sinks_options():
    config = parse_config({"web": {"listen": "0.0.0.0:8080", "token": "t" * 20, "max_clients": 2, "jpeg_fps": 3,
                                   "metrics": False},
                           "mqtt": {"enabled": True, "host": "broker.lan", "port": 1884, "topic_prefix": "edgerec/door",
                                    "username": "cam", "password": "pw", "discovery_prefix": ""}})  # fmt: skip
    options = run_options(config)
    assert options.web == WebOptions("0.0.0.0:8080", "t" * 20, 2, 3.0, metrics=False)
    assert options.mqtt == MqttOptions("broker.lan", 1884, "edgerec/door", "cam", "pw", "", "")
    defaults = run_options(Config())
    assert defaults.web is None and defaults.mqtt is None
    empty = run_options(parse_config({"web": {"listen": "127.0.0.1:8080"}, "mqtt": {"enabled": True}}))
    assert empty.web.token is None and empty.mqtt.password is None  # then the environment's, if any


def test_flags_the_user_gave_override_the_file_and_only_those(tmp_path):
    path = write(tmp_path, '[source]\nuri = "demo"\nfps = 10\nmjpg = false\n[model]\ndevice = "cpu"\n'
                 "[recognition]\nema = 0.3\n[display]\nwindow = true\n")
    from_file = options_from_args(run_parser().parse_args(["--config", str(path)]))
    assert from_file.source.fps == 10 and not from_file.source.mjpg and from_file.device == "cpu"
    assert from_file.smoothing.alpha == 0.3 and from_file.display is True and from_file.source.uri == "demo"

    flags = "--config {} --fps 5 --device auto --ema 0.5 --no-display --source clip.mp4 --as-fast-as-possible"
    overridden = options_from_args(run_parser().parse_args(flags.format(path).split()))
    assert overridden.source.fps == 5 and overridden.device == "auto" and overridden.smoothing.alpha == 0.5
    assert overridden.display is False and overridden.source.uri == "clip.mp4" and not overridden.source.paced
    assert not overridden.source.mjpg  # not given: the file's value stands


def test_fast_int8_is_off_unless_the_file_or_the_flag_says_so(tmp_path):
    plain = write(tmp_path, '[source]\nuri = "demo"\n')
    assert not options_from_args(run_parser().parse_args(["--config", str(plain)])).fast_int8
    assert options_from_args(run_parser().parse_args(["--config", str(plain), "--fast-int8"])).fast_int8
    fast = write(tmp_path, '[source]\nuri = "demo"\n[model]\nfast_int8 = true\n')
    assert options_from_args(run_parser().parse_args(["--config", str(fast)])).fast_int8
    summary = check(fast)
    assert summary.returncode == 0
    assert "threads auto, fast INT8 (saturating sums on x86 without VNNI)\n" in summary.stdout
    bad = write(tmp_path, '[source]\nuri = "demo"\n[model]\nfast_int8 = "yes"\n')
    done = check(bad)
    assert done.returncode != 0 and 'model.fast_int8: must be true or false, got "yes"' in done.stderr


def test_every_config_backed_flag_names_a_real_key_and_a_real_flag():
    parser = run_parser()
    dests = {action.dest for action in parser._actions}
    for dest, key in FLAG_KEYS.items():
        assert dest in dests
        section, field = key.split(".")
        assert field in Config.model_fields[section].annotation.model_fields
        assert parser.get_default(dest) is None, f"--{dest} has a default, so giving it cannot be told apart"


def test_a_bad_flag_value_names_the_flag():
    with pytest.raises(EdgerecError, match=r"^--fps: must be > 0, got -3.0$"):
        with_overrides(Config(), {"source.fps": -3.0}, {"source.fps": "--fps"})


def test_run_with_a_config_plays_the_file_writes_events_and_tells_systemd(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", ["blue"] * 10 + ["red"] * 10, size=(64, 48))
    model, events = make_tiny_model(tmp_path / "tiny.onnx"), tmp_path / "events.jsonl"
    text = (f'[source]\nuri = "{clip}"\npaced = false\n[model]\npath = "{model}"\ndevice = "cpu"\nthreads = 1\n'
            f'[recognition]\nswitch_frames = 1\n[display]\nwindow = false\n[events]\npath = "{events}"\n')
    config = write(tmp_path, text)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "10000000"}
    env.pop("JOURNAL_STREAM", None)
    done = subprocess.run([sys.executable, "-m", "edge.app.cli", "run", "--config", str(config)], env=env,
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["label"] for line in events.read_text().splitlines()] == ["blue", "red"]
    assert "20 frames" in done.stderr and "stopped by end" in done.stderr
    log = [line for line in done.stderr.splitlines() if " INFO edgerec." in line]
    assert len(log) == 3 and "model" in log[0] and "CPUExecutionProvider" in log[0]
    assert log[1].endswith("source: ended") and log[2].endswith("source: closed")
    notify.setblocking(False)
    messages = []
    while True:
        try:
            messages.append(notify.recv(4096).decode())
        except BlockingIOError:
            break
    assert messages[0] == "READY=1" and "WATCHDOG=1" in messages and messages[-1] == "STOPPING=1"
    assert config.read_text() == text  # read, never rewritten


def test_a_reduced_decode_is_carried_and_said_by_check_config(tmp_path):
    path = write(tmp_path, '[source]\nuri = "http://cam.local/video.mjpg"\nfps = 15\ndecode_scale = 2\n')
    assert run_options(load_config(path)).source.decode_scale == 2
    done = check(path)
    assert done.returncode == 0
    assert "source       http://cam.local/video.mjpg (15 fps, decoded at 1/2 size)" in done.stdout
    cameras = write(tmp_path, '[[cameras]]\nname = "gate"\nsource = { uri = "0", decode_scale = 4 }\n', "cams.toml")
    assert "camera       gate: 0 (decoded at 1/4 size); regions: whole frame" in check(cameras).stdout
