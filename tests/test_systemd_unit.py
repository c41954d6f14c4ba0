"""systemd/edgerec.service: `systemd-analyze verify` is clean, the security exposure is at most 2.0, and the
runtime (numpy, OpenCV, onnxruntime, the embedded model) works under the unit's seccomp filters."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

UNIT = REPO / "systemd" / "edgerec.service"
SANDBOX = REPO / "tests" / "unit_sandbox.py"
HOST_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None)

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze not installed (Debian package: systemd)")


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "--no-pager", *args], capture_output=True, text=True, timeout=60)


def fake_root(tmp_path: Path, unit_text: str) -> Path:
    """A root holding the unit, an executable at its ExecStart and ExecReload paths and the host's own system units
    (so After=/Wants= targets resolve): verify then checks the unit file exactly as shipped."""
    assert HOST_UNITS is not None, "no /usr/lib/systemd/system to resolve dependencies against"
    root = tmp_path / "root"
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/edgerec.service").write_text(unit_text)
    for command in re.findall(r"^Exec(?:Start|Reload)=(\S+)", unit_text, re.M):
        binary = root / command.lstrip("/")
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    return root


def test_verify_is_clean(tmp_path: Path) -> None:
    result = analyze("verify", f"--root={fake_root(tmp_path, UNIT.read_text())}", "edgerec.service")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_catches_a_misspelt_directive(tmp_path: Path) -> None:
    """The check above can fail: a typo in a hardening directive is reported (and would be ignored by systemd)."""
    text = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    result = analyze("verify", f"--root={fake_root(tmp_path, text)}", "edgerec.service")
    assert "Unknown key" in result.stderr and "ProtectSytem" in result.stderr


def test_security_exposure_at_most_2() -> None:
    result = analyze("security", "--offline=true", "--threshold=20", str(UNIT))
    exposure = float(re.search(r"Overall exposure level for edgerec\.service: (\d+\.\d+)", result.stdout).group(1))
    assert exposure <= 2.0, result.stdout
    assert result.returncode == 0, result.stderr


def test_unit_shape() -> None:
    """What the rest of edgerec relies on: notify + watchdog, the install paths, the state directories."""
    text = UNIT.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "Restart=on-failure", "DevicePolicy=closed",
                 "DeviceAllow=char-video4linux rw", "StateDirectory=edgerec", "LogsDirectory=edgerec",
                 "ConfigurationDirectory=edgerec", "ConfigurationDirectoryMode=0770",
                 "ReadWritePaths=/etc/edgerec", "MemoryDenyWriteExecute=yes", "SupplementaryGroups=video",
                 "ExecStart=/opt/edgerec/venv/bin/edgerec run --config /etc/edgerec/config.toml"):
        assert re.search(f"^{re.escape(line)}$", text, re.M), line
    assert re.search(r"^WatchdogSec=\d+s$", text, re.M)


# The runtime under the unit's seccomp filters (SystemCallFilter=, SystemCallArchitectures=,
# MemoryDenyWriteExecute=, RestrictAddressFamilies=), applied by tests/unit_sandbox.py through libseccomp.

def have_libseccomp() -> bool:
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return False
    return True


needs_libseccomp = pytest.mark.skipif(not have_libseccomp(),
                                      reason="libseccomp.so.2 not found (Debian package: libseccomp2)")

LABEL_DEMO_FRAMES = """
import json, cv2, numpy as np
from edge.core.model import Model
model = Model.load(None, "cpu", threads=2)
capture = cv2.VideoCapture("edge/assets/demo/demo.mp4")
labels = []
while len(labels) < 40:
    ok, frame = capture.read()
    assert ok, "demo clip ended early"
    labels.append(model.classify([frame], top_k=1)[0].label)
print(json.dumps(labels))
"""

PROBE_LIMITS = """
import errno, mmap, socket
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("wx-allowed")
except PermissionError:
    print("wx-denied")
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
    print("netlink-allowed")
except OSError as exc:
    print("netlink-denied" if exc.errno == errno.EAFNOSUPPORT else f"netlink-{exc}")
server = socket.create_server(("127.0.0.1", 0))
socket.create_connection(server.getsockname()).close()
print("tcp-ok")
"""


def run_python(code: str, sandboxed: bool) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code]
    if sandboxed:
        command = [sys.executable, str(SANDBOX), str(UNIT), "--", *command]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)


@needs_libseccomp
def test_runtime_labels_video_frames_under_the_units_filters() -> None:
    """numpy (OpenBLAS), OpenCV's video decoder and onnxruntime load and label 40 demo frames under the unit's
    filters, with the same labels as without them: MemoryDenyWriteExecute=yes and the syscall set hold."""
    plain = run_python(LABEL_DEMO_FRAMES, sandboxed=False)
    boxed = run_python(LABEL_DEMO_FRAMES, sandboxed=True)
    assert plain.returncode == 0, plain.stderr
    assert boxed.returncode == 0, f"exit {boxed.returncode}: {boxed.stderr[-2000:]}"
    assert json.loads(boxed.stdout) == json.loads(plain.stdout)


@needs_libseccomp
def test_filters_are_live() -> None:
    """Controls for the test above: W+X memory and netlink sockets are refused, TCP works, and a
    privileged system call (chroot, harmless here if it were let through) kills the process with SIGSYS."""
    probe = run_python(PROBE_LIMITS, sandboxed=True)
    assert probe.stdout.split() == ["wx-denied", "netlink-denied", "tcp-ok"], probe.stderr
    killed = run_python("import os; os.chroot('/'); print('chroot ran')", sandboxed=True)
    assert killed.returncode == -signal.SIGSYS and "chroot ran" not in killed.stdout


@needs_libseccomp
def test_live_pipeline_runs_under_the_units_filters(tmp_path: Path) -> None:
    """`edgerec run` itself (grabber thread, video decoding, inference, events, snapshots, an mp4 recording)."""
    events, snapshots, video = tmp_path / "events.jsonl", tmp_path / "snapshots", tmp_path / "out.mp4"
    command = [sys.executable, str(SANDBOX), str(UNIT), "--", sys.executable, "-m", "edge.app.cli", "run",
               "--source", "demo", "--as-fast-as-possible", "--max-frames", "40", "--no-display", "--threads", "2",
               "--events", str(events), "--snapshots", str(snapshots), "--out", str(video)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert "40 frames" in result.stderr
    lines = events.read_text().splitlines()
    assert lines and len(list(snapshots.iterdir())) == len(lines) and video.stat().st_size > 0
