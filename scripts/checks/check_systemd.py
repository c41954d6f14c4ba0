"""Inside half of scripts/checks/check_systemd.sh (run that, not this): the steps, run as root by the booted container's
systemd (Debian 12, systemd 252, no procps) against the real unit, over three boots of one disk.

    python3 scripts/checks/check_systemd.py OUT PHASE  # OUT: results-PHASE.json, summary.txt, journal-PHASE.txt

PHASE install (the first boot):
  1. install   scripts/install-service.sh --no-start: the unit enabled, not started; the config edited by root in
               place; no /bin/kill or kill on PATH (no procps); the container then shuts down
PHASE boot (the second boot):
  2. boot      the unit started by the boot, not by hand: active (Type=notify: READY came), StatusText with fps,
               /healthz 200, NRestarts 0; seconds from systemd's start to READY
  3. sandbox   the main process as /proc shows it: user edgerec in group video, no capabilities, NoNewPrivs,
               a seccomp filter, / and /usr read-only, /etc/edgerec and the state and logs folders writable
  4. save      PUT /api/regions/camera/door with the token and same-origin headers: config.toml rewritten by the
               service (edgerec-owned 0640), config.toml.bak beside it, the region running after the reload
  5. reload    root adds a region, `systemctl reload` (the unit's ExecReload= without procps): the journal's
               "reloaded:" line, the region in /api/status, the same main process, frames counting on; a broken
               config is refused with one line, old one kept
  6. lock      a drop-in `ReadOnlyPaths=/etc/edgerec`: the same PUT answers 400 with one line, the file unchanged
  7. watchdog  SIGSTOP the main process: after WatchdogSec= (30 s) systemd aborts it, after RestartSec= (10 s) it
               starts it again: NRestarts + 1, active
  8. upgrade   /etc/edgerec set to root:root 0755 (an older installer's): a start leaves it so, with a warning;
               scripts/install-service.sh again makes it root:edgerec 0770, keeps the config, restarts
  9. teach     crops of two shipped photos as region door's collected crops, then train and accept from the web
               API: the region runs the accepted model (set in the config)
 10. stop      with [recording] on: `systemctl stop` time, Result=success, frames OpenCV reads back from the mp4
 11. exposure  `systemd-analyze security edgerec` <= 2.0 (no drop-ins left), no sandbox complaints in the journal
PHASE reboot (the third boot):
 12. reboot    started by the boot again and ready; the config byte for byte as the second boot left it, the
               recording and the accepted model file unchanged, the region running that model

Only the standard library (the container's python3): the edgerec venv's own python reads the recording back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path("/etc/edgerec")
CONFIG = CONFIG_DIR / "config.toml"
BACKUP = CONFIG_DIR / "config.toml.bak"
DROP_INS = Path("/etc/systemd/system/edgerec.service.d")
STATE = Path("/var/lib/edgerec")
RECORDING = "/var/lib/edgerec/check.mp4"
VENV_PYTHON = "/opt/edgerec/venv/bin/python"
MAX_EXPOSURE = 2.0


class Failed(Exception):
    """A check did not hold: the message says what was seen."""


@dataclass
class Step:
    number: int
    name: str
    passed: bool = False
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Service:
    """The installed unit, driven with systemctl, and its web API on loopback."""

    port: int
    token: str
    figures: dict[str, float] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    """What the second boot leaves for the third to find: sha256 of the config, recording and model, the model."""

    def show(self, prop: str) -> str:
        return sh("systemctl", "show", "-p", prop, "--value", "edgerec").strip()

    def http(self, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
        origin = f"http://127.0.0.1:{self.port}"
        request = urllib.request.Request(origin + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {self.token}", "Origin": origin,
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def status(self) -> dict:
        code, body = self.http("GET", "/api/status")
        if code != 200:
            raise Failed(f"/api/status answered {code}: {body[:200]}")
        return json.loads(body)

    def regions(self) -> list[str]:
        return [region["name"] for region in self.status()["cameras"]["camera"]["regions"]]


def sh(*command: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise Failed(f"`{' '.join(command)}` exited {result.returncode}: {(result.stderr or result.stdout)[-800:]}")
    return result.stdout


def wait_until(what: str, done: Callable[[], object], timeout: float) -> float:
    """Seconds until `done()` is true (exceptions count as not yet), or Failed naming `what`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if done():
                return time.monotonic() - start
        except (Failed, OSError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    raise Failed(f"{what}: not within {timeout:.0f} s")


def journal(grep: str) -> list[str]:
    out = sh("journalctl", "-b", "-u", "edgerec", "-o", "cat", "--no-pager")
    return [line for line in out.splitlines() if grep in line]


def free_port() -> int:
    """A free loopback port: the container shares the host's network (no --private-network)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_text(service: Service) -> str:
    return f"""# written by scripts/checks/check_systemd.py (root, in place)
[source]
uri = "demo"
loop = true

[model]
threads = 1

[recognition]
infer_fps = 2

[recording]
path = "{RECORDING}"

[web]
listen = "127.0.0.1:{service.port}"
token = "{service.token}"
"""


def edit_in_place(text: str) -> None:
    """As root's editor would (sudoedit): the same file, so its owner and mode stay."""
    with open(CONFIG, "r+", encoding="utf-8") as file:
        file.write(text)
        file.truncate()


def owner_mode(path: Path) -> str:
    info = path.stat()
    user = sh("id", "-nu", str(info.st_uid)).strip() if info.st_uid else "root"
    group = sh("getent", "group", str(info.st_gid)).split(":")[0] if info.st_gid else "root"
    return f"{user}:{group} {stat.S_IMODE(info.st_mode):04o}"


def expect(what: str, seen: object, wanted: object) -> None:
    if seen != wanted:
        raise Failed(f"{what}: {seen!r}, expected {wanted!r}")


def drop_in(name: str, text: str | None) -> None:
    """Write (or with None remove) a drop-in, then daemon-reload."""
    path = DROP_INS / f"{name}.conf"
    if text is None:
        path.unlink(missing_ok=True)
    else:
        DROP_INS.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sh("systemctl", "daemon-reload")


def installer(*args: str) -> str:
    env = {**os.environ, "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return sh("bash", str(SRC / "scripts" / "install-service.sh"), *args, timeout=900, env=env)


def healthy(service: Service) -> str:
    """/healthz's answer once it is 200. READY=1 goes with the first labelled frame, which may reach the web sink
    a moment later, so a 503 "no frame yet" right after a start is waited out (10 s at most)."""
    answer: list[str] = []

    def ok() -> bool:
        code, body = service.http("GET", "/healthz")
        answer[:] = [f"{code} {body.strip()}"]
        return code == 200

    try:
        wait_until("/healthz 200", ok, 10)
    except Failed as error:
        raise Failed(f"{error}; it answered {answer[0] if answer else 'nothing'}") from None
    return answer[0]


# --- the steps, in the order they run ---------------------------------------------------------------------


def install(service: Service) -> str:
    """Installed and enabled, not started: the next boot starts it."""
    start = time.monotonic()
    installer("--no-start")
    installed = time.monotonic() - start
    expect("/etc/edgerec", owner_mode(CONFIG_DIR), "root:edgerec 0770")
    expect("config.toml as installed", owner_mode(CONFIG), "root:edgerec 0640")
    edit_in_place(config_text(service))
    sh(VENV_PYTHON, "-m", "edge.app.cli", "check-config", str(CONFIG))
    expect("systemctl is-enabled", sh("systemctl", "is-enabled", "edgerec").strip(), "enabled")
    expect("ActiveState after the install", service.show("ActiveState"), "inactive")
    kill = [path for path in ("/bin/kill", "/usr/bin/kill") if Path(path).exists()]
    if kill or Path("/usr/share/doc/procps").exists():
        raise Failed(f"procps is installed ({kill or '/usr/share/doc/procps'}): the reload would not be shown "
                     "to work without it")
    service.figures.update(install_s=installed)
    return (f"installed in {installed:.0f} s (/etc/edgerec root:edgerec 0770, config.toml root:edgerec 0640); "
            f"enabled, inactive; no procps (no /bin/kill); shutting down for the boot that starts it")


def boot(service: Service) -> str:
    """The unit started by this boot's multi-user.target, not by the check; Type=notify: active means READY."""
    took = wait_until("edgerec active after the boot", lambda: service.show("ActiveState") == "active", 120)
    expect("NRestarts", service.show("NRestarts"), "0")
    status_text = service.show("StatusText")
    if "fps" not in status_text:
        raise Failed(f"StatusText {status_text!r} has no fps: READY and STATUS= not sent")
    userspace = int(sh("systemctl", "show", "-p", "UserspaceTimestampMonotonic", "--value").strip())
    active = int(service.show("ActiveEnterTimestampMonotonic"))
    started = int(service.show("ExecMainStartTimestampMonotonic"))
    mode_warnings = journal("already exists but the mode is different")
    if mode_warnings:
        raise Failed(f"systemd warned about /etc/edgerec's mode: {mode_warnings[0]}")
    ready_s, start_s = (active - userspace) / 1e6, (active - started) / 1e6
    service.figures.update(boot_ready_s=ready_s, start_s=start_s)
    return (f"started by the boot (the check waited {took:.1f} s, started nothing): READY {ready_s:.1f} s after "
            f"systemd started, {start_s:.1f} s after edgerec's exec; StatusText={status_text!r}; "
            f"/healthz {healthy(service)!r}")


def sandbox(service: Service) -> str:
    """What the unit's hardening made of the running process, read from /proc: identity, capabilities, the
    seccomp filter and the mounts (ProtectSystem=strict with the writable folders)."""
    pid = service.show("MainPID")
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
    uid, video = sh("id", "-u", "edgerec").strip(), sh("getent", "group", "video").split(":")[2]
    expect("Uid (real, effective, saved, fs)", fields["Uid"].split(), [uid] * 4)
    if video not in fields["Groups"].split():
        raise Failed(f"Groups {fields['Groups']!r} lacks video ({video}): SupplementaryGroups=video not applied")
    expect("CapEff, CapPrm, CapBnd", [fields[k] for k in ("CapEff", "CapPrm", "CapBnd")], ["0" * 16] * 3)
    expect("NoNewPrivs, Seccomp (2: filter)", [fields["NoNewPrivs"], fields["Seccomp"]], ["1", "2"])
    mounts = {point: mount_access(pid, point) for point in ("/", "/usr", "/etc/edgerec", "/var/lib/edgerec",
                                                          "/var/log/edgerec", "/tmp")}
    expect("mounts", mounts, {"/": "ro", "/usr": "ro", "/etc/edgerec": "rw", "/var/lib/edgerec": "rw",
                              "/var/log/edgerec": "rw", "/tmp": "rw"})
    return (f"pid {pid}: uid {uid} (edgerec) in video ({video}), no capabilities, NoNewPrivs 1, Seccomp 2; "
            f"read-only / and /usr, writable {', '.join(p for p, a in mounts.items() if a == 'rw')}")


def mount_access(pid: str, point: str) -> str:
    """ro or rw: how `point` is mounted in the process's namespace (the topmost mount at or above it)."""
    best, access = "", "?"
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        mount, options = fields[4], fields[5].split(",")
        covers = point == mount or point.startswith(mount.rstrip("/") + "/")
        if covers and len(mount) >= len(best):
            best, access = mount, options[0]
    return access


def save_region(service: Service) -> str:
    before = CONFIG.read_text()
    code, body = service.http("PUT", "/api/regions/camera/door", {"box": [0.1, 0.1, 0.4, 0.5]})
    expect(f"PUT /api/regions/camera/door ({body.strip()[:200]})", code, 200)
    text = CONFIG.read_text()
    if 'name = "door"' not in text:
        raise Failed(f"config.toml has no region door after the save:\n{text}")
    expect("config.toml.bak", BACKUP.read_text() if BACKUP.exists() else None, before)
    expect("config.toml after the save", owner_mode(CONFIG), "edgerec:edgerec 0640")
    took = wait_until("region door running after the save's reload", lambda: "door" in service.regions(), 30)
    return (f"200 {body.strip()}; config.toml rewritten (edgerec:edgerec 0640), .bak = the previous file "
            f"({owner_mode(BACKUP)}); door running {took:.1f} s later")


def reload(service: Service) -> str:
    if shutil.which("kill"):
        raise Failed(f"a kill command is on PATH ({shutil.which('kill')}): procps is installed")
    pid, frames = service.show("MainPID"), service.status()["frames"]
    edit_in_place(CONFIG.read_text() + '\n[[regions]]\nname = "shelf"\nbox = [0.5, 0.5, 0.4, 0.4]\n')
    expect("config.toml after root's edit", owner_mode(CONFIG), "edgerec:edgerec 0640")
    reloaded = len(journal("reloaded:"))
    sh("systemctl", "reload", "edgerec")
    took = wait_until("region shelf running after systemctl reload", lambda: "shelf" in service.regions(), 30)
    wait_until("the journal's reloaded: line", lambda: len(journal("reloaded:")) > reloaded, 10)
    line = journal("reloaded:")[-1]
    good = CONFIG.read_text()
    edit_in_place(good.replace("box = [0.5, 0.5, 0.4, 0.4]", "box = [0.5, 0.5, 0.9, 0.9]"))
    refused = len(journal("reload refused"))
    sh("systemctl", "reload", "edgerec")
    wait_until("the journal's reload refused line", lambda: len(journal("reload refused")) > refused, 30)
    refusal = journal("reload refused")[-1]
    edit_in_place(good)
    frames_after = service.status()["frames"]
    expect("MainPID across both reloads", service.show("MainPID"), pid)
    expect("regions after the refused reload", service.regions(), ["door", "shelf"])
    if frames_after <= frames:
        raise Failed(f"frames did not go on: {frames} before, {frames_after} after")
    return (f"no procps: applied in {took:.1f} s ({line!r}); broken config refused: {refusal!r}; same PID {pid}, "
            f"frames {frames} -> {frames_after}, /healthz {healthy(service)!r}")


def lock(service: Service) -> str:
    drop_in("50-lock-config", "[Service]\nReadOnlyPaths=/etc/edgerec\n")
    try:
        sh("systemctl", "restart", "edgerec", timeout=90)
        before = CONFIG.read_text()
        code, body = service.http("PUT", "/api/regions/camera/gate", {"box": [0.0, 0.0, 0.2, 0.2]})
        expect(f"PUT with /etc/edgerec read-only ({body.strip()[:200]})", code, 400)
        expect("config.toml under the lock", CONFIG.read_text(), before)
        if "\n" in json.loads(body)["error"]:
            raise Failed(f"the refusal is not one line: {body!r}")
    finally:
        drop_in("50-lock-config", None)
    return f"400 {body.strip()}"


def watchdog(service: Service) -> str:
    """The shipped WatchdogSec= and RestartSec=: systemd sends SIGABRT (and SIGCONT, so the stopped process gets it)."""
    restarts, pid = int(service.show("NRestarts")), service.show("MainPID")
    timeouts = len(journal("Watchdog timeout"))
    stopped = time.monotonic()
    os.kill(int(pid), signal.SIGSTOP)
    fired = wait_until("systemd's Watchdog timeout line", lambda: len(journal("Watchdog timeout")) > timeouts, 90)
    wait_until("a new main process, active", lambda: service.show("MainPID") not in ("0", pid)
               and service.show("ActiveState") == "active", 120)
    back = time.monotonic() - stopped
    expect("NRestarts", int(service.show("NRestarts")), restarts + 1)
    line = journal("Watchdog timeout")[-1]
    healthy(service)
    service.figures.update(watchdog_fired_s=fired, watchdog_back_s=back)
    return (f"SIGSTOP pid {pid}: {line!r} after {fired:.1f} s; active again (pid {service.show('MainPID')}, "
            f"NRestarts {restarts} -> {restarts + 1}) {back:.1f} s after the SIGSTOP")


def upgrade(service: Service) -> str:
    """First the folder as an older installer left it (root:root 0755): systemd only warns at start, changing
    neither owner nor mode; then the installer, which sets them again and keeps the config."""
    os.chown(CONFIG_DIR, 0, 0)
    CONFIG_DIR.chmod(0o755)
    warned = len(journal("already exists but the mode is different"))
    sh("systemctl", "restart", "edgerec", timeout=90)
    expect("/etc/edgerec after a start", owner_mode(CONFIG_DIR), "root:root 0755")
    wait_until("systemd's mode warning", lambda: len(journal("already exists but the mode is different")) > warned, 10)
    warning = journal("already exists but the mode is different")[-1]
    before, pid = CONFIG.read_text(), service.show("MainPID")
    start = time.monotonic()
    out = installer()
    took = time.monotonic() - start
    if "kept as it is" not in out:
        raise Failed(f"the installer did not keep the config:\n{out[-800:]}")
    expect("config.toml after the upgrade", (CONFIG.read_text(), owner_mode(CONFIG)),
           (before, "edgerec:edgerec 0640"))
    expect("/etc/edgerec after the upgrade", owner_mode(CONFIG_DIR), "root:edgerec 0770")
    expect("ActiveState", service.show("ActiveState"), "active")
    if service.show("MainPID") == pid:
        raise Failed("the installer did not restart the service")
    return (f"a start left /etc/edgerec root:root 0755 ({warning!r}); the installer ({took:.0f} s) made it "
            f"root:edgerec 0770, kept the config (edgerec:edgerec 0640, regions door, shelf), restarted the service: "
            f"{healthy(service)!r}")


def teach(service: Service) -> str:
    """Train and accept from the web API on crops of two shipped photos put where the page's collector puts them
    (the collector itself pauses while a recording draws on the frames first: tests/test_web_teach.py covers it)."""
    data = STATE / "teach" / "camera" / "door" / "data"
    sh(VENV_PYTHON, "-c", CROPS, str(SRC / "tests" / "data" / "photos"), str(data))
    sh("chown", "-R", "edgerec:edgerec", str(STATE / "teach"))
    code, body = service.http("POST", "/api/train", {"camera": "camera", "region": "door"})
    expect(f"POST /api/train ({body.strip()[:200]})", code, 202)
    took = wait_until("the training to end", lambda: train_state(service)["state"] != "running", 180)
    trained = train_state(service)
    expect(f"training ({json.dumps(trained)[:300]})", trained["state"], "done")
    code, body = service.http("POST", "/api/accept", {"camera": "camera", "region": "door"})
    expect(f"POST /api/accept ({body.strip()[:200]})", code, 200)
    model = json.loads(body)["model"]
    wait_until("region door labelled cup or monkey", lambda: region_label(service, "door") in LABELS, 30)
    if f'model = "{model}"' not in CONFIG.read_text():
        raise Failed(f"the config does not name the accepted model {model}")
    service.kept["model"] = model
    return f"trained in {took:.1f} s, accepted {model}; door now says {region_label(service, 'door')!r}"


LABELS = ("cup", "monkey")
CROPS = """import sys, cv2, pathlib
photos, data = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for label, photo in (("monkey", "baboon.jpg"), ("cup", "coffee.jpg")):
    image = cv2.imread(str(photos / photo)); h, w = image.shape[:2]
    (data / label).mkdir(parents=True, exist_ok=True)
    for n in range(6):
        crop = image[n * h // 16: h - n * h // 16, n * w // 16: w - n * w // 16]
        cv2.imwrite(str(data / label / f"{1000 + n}-{n}.jpg"), crop)
"""


def train_state(service: Service) -> dict:
    return json.loads(service.http("GET", "/api/train")[1])


def region_label(service: Service, name: str) -> str:
    return next(r["label"] for r in service.status()["cameras"]["camera"]["regions"] if r["name"] == name)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stop(service: Service) -> str:
    wait_until("100 frames in this run", lambda: service.status()["frames"] >= 100, 60)
    frames = service.status()["frames"]
    start = time.monotonic()
    sh("systemctl", "stop", "edgerec", timeout=60)
    took = time.monotonic() - start
    expect("ActiveState after stop", service.show("ActiveState"), "inactive")
    expect("Result after stop", service.show("Result"), "success")
    count = sh(VENV_PYTHON, "-c", "import sys, cv2\ncapture = cv2.VideoCapture(sys.argv[1]); n = 0\n"
               "while capture.read()[0]:\n    n += 1\nprint(n, capture.get(cv2.CAP_PROP_FRAME_WIDTH), "
               "capture.get(cv2.CAP_PROP_FRAME_HEIGHT))", RECORDING).split()
    if int(count[0]) < frames:
        raise Failed(f"the recording holds {count[0]} frames, fewer than the {frames} counted before the stop")
    service.figures.update(stop_s=took, recorded_frames=int(count[0]))
    service.kept.update(config=sha256(CONFIG), recording=sha256(RECORDING), frames=count[0],
                        model_sha=sha256(service.kept["model"]))
    return (f"`systemctl stop` took {took:.1f} s, Result=success; {RECORDING} ({Path(RECORDING).stat().st_size} "
            f"bytes) reads back {count[0]} frames of {float(count[1]):.0f}x{float(count[2]):.0f} "
            f"({frames} counted in /api/status before the stop)")


def exposure(_: Service) -> str:
    """The installed unit's score, and a journal free of what a too-tight sandbox would leave."""
    if list(DROP_INS.glob("*.conf")):
        raise Failed(f"drop-ins left in {DROP_INS}: the score would not be the shipped unit's")
    out = sh("systemd-analyze", "security", "--no-pager", "edgerec")
    found = re.search(r"Overall exposure level for edgerec\.service: (\d+\.\d+) (\w+)", out)
    if not found:
        raise Failed(f"no exposure level in:\n{out[-400:]}")
    if float(found.group(1)) > MAX_EXPOSURE:
        raise Failed(f"exposure {found.group(1)} > {MAX_EXPOSURE}")
    sandboxed = [line for line in sh("journalctl", "-b", "-u", "edgerec", "-o", "cat", "--no-pager").splitlines()
                 if re.search(r"sigsys|permission denied|operation not permitted", line, re.I)]
    if sandboxed:
        raise Failed(f"the unit's journal has {len(sandboxed)} sandbox complaints, first: {sandboxed[0]}")
    return f"{found.group(1)} {found.group(2)}; no SIGSYS, permission denied or operation not permitted in the journal"


def reboot(service: Service) -> str:
    """What the second boot saved is there after a reboot, and the service, started by the boot, runs it."""
    took = wait_until("edgerec active after the reboot", lambda: service.show("ActiveState") == "active", 120)
    expect("NRestarts", service.show("NRestarts"), "0")
    kept = service.kept
    expect("config.toml's sha256 (as the second boot left it)", sha256(CONFIG), kept["config"])
    expect(f"{RECORDING}'s sha256", sha256(RECORDING), kept["recording"])
    expect(f"{kept['model']}'s sha256", sha256(kept["model"]), kept["model_sha"])
    code, body = service.http("GET", "/api/models/camera/door")
    expect(f"GET /api/models/camera/door ({body.strip()[:200]})", code, 200)
    expect("the model region door uses", json.loads(body)["current"], kept["model"])
    wait_until("region door labelled cup or monkey", lambda: region_label(service, "door") in LABELS, 30)
    expect("regions", service.regions(), ["door", "shelf"])
    return (f"started by the boot ({took:.1f} s after the check began); config.toml, {RECORDING} ({kept['frames']} "
            f"frames) and {kept['model']} byte for byte as before the reboot; door runs it and says "
            f"{region_label(service, 'door')!r}; /healthz {healthy(service)!r}")


PHASES = {"install": (install,),
          "boot": (boot, sandbox, save_region, reload, lock, watchdog, upgrade, teach, stop, exposure),
          "reboot": (reboot,)}


def run_steps(out: Path, phase: str) -> list[Step]:
    """The phase's steps in order, numbered on from the earlier phases', printed as each ends; the first failure
    ends the run (the later ones depend on it)."""
    saved = out / "service.json"
    service = Service(**json.loads(saved.read_text())) if saved.exists() else \
        Service(port=free_port(), token=secrets.token_urlsafe(24))
    first = 1 + sum(len(PHASES[name]) for name in PHASES if list(PHASES).index(name) < list(PHASES).index(phase))
    steps = []
    for number, check in enumerate(PHASES[phase], first):
        step = Step(number, check.__name__)
        start = time.monotonic()
        try:
            step.detail, step.passed = check(service), True
        except (Failed, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as error:
            step.detail = f"{type(error).__name__}: {error}" if not isinstance(error, Failed) else str(error)
        step.seconds = round(time.monotonic() - start, 1)
        steps.append(step)
        print(f"{'PASS' if step.passed else 'FAIL'} {number}. {step.name} ({step.seconds} s): {step.detail}",
              flush=True)
        if not step.passed:
            break
    saved.write_text(json.dumps(asdict(service), indent=1) + "\n")
    (out / f"results-{phase}.json").write_text(json.dumps({"steps": [asdict(s) for s in steps],
                                                           "figures": service.figures}, indent=1) + "\n")
    return steps


def main() -> int:
    out, phase = Path(sys.argv[1]), sys.argv[2]
    if phase not in PHASES:
        print(f"check_systemd.py: error: phase {phase!r}; valid: {', '.join(PHASES)}", file=sys.stderr)
        return 2
    steps = run_steps(out, phase)
    with open(out / "summary.txt", "a") as summary:
        summary.write("".join(f"{'PASS' if s.passed else 'FAIL'} {s.number}. {s.name} ({s.seconds} s): {s.detail}\n"
                              for s in steps))
    with open(out / f"journal-{phase}.txt", "w") as log:
        subprocess.run(["journalctl", "-b", "-u", "edgerec", "--no-pager"], stdout=log, timeout=60)
    return 0 if len(steps) == len(PHASES[phase]) and all(s.passed for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
