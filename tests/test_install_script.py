"""scripts/install-service.sh, run for real into a temporary --root.

The slow and system-changing parts are stand-ins on PATH that record how they were called: `python3`
(creates a venv skeleton whose `python -m pip install` is recorded and whose `edgerec` lacks
`config --service` unless FAKE_DEFAULTS is set), `systemctl` and `systemd-sysusers`. One test uses the
real systemctl and systemd-sysusers in --root mode, which work offline without systemd as PID 1.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

SCRIPT = REPO / "scripts" / "install-service.sh"
UNIT_SOURCE = REPO / "systemd" / "edgerec.service"
HELPER = REPO / "scripts" / "venv_requirements.py"
PIP = "venv-python -m pip install --quiet --disable-pip-version-check"

FAKE_PYTHON = """#!/bin/sh
echo "python3 $*" >> "$FAKE_LOG"
[ "$1" = -c ] && exit "${FAKE_PY_STATUS:-0}"
[ "$1 $2" = "-m venv" ] || exit 3
for venv; do :; done
mkdir -p "$venv/bin"
cat > "$venv/bin/python" <<'EOF'
#!/bin/sh
echo "venv-python $*" >> "$FAKE_LOG"
case "$1 $2" in
    *venv_requirements.py\\ replaced) [ -z "$FAKE_REPLACED" ] || printf '%s\\n' $FAKE_REPLACED ;;
    *venv_requirements.py\\ requirements) printf '%s\\n' 'numpy>=1.24' 'tomli>=1.1; python_version < "3.11"' ;;
esac
EOF
cat > "$venv/bin/edgerec" <<'EOF'
#!/bin/sh
[ "$*" = "config --service" ] && [ -n "$FAKE_DEFAULTS" ] && { printf '%s\\n' "$FAKE_DEFAULTS"; exit 0; }
echo "edgerec: error: argument COMMAND: invalid choice: 'config'" >&2; exit 2
EOF
chmod +x "$venv/bin/python" "$venv/bin/edgerec"
"""
RECORDER = '#!/bin/sh\necho "{name} $*" >> "$FAKE_LOG"\n'


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(FAKE_PYTHON)
    for name in ("systemctl", "systemd-sysusers"):
        (bin_dir / name).write_text(RECORDER.format(name=name))
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp_path / "calls.log")}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def install(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def calls(env: dict[str, str]) -> list[str]:
    log = Path(env["FAKE_LOG"])
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if not line.startswith("python3 -c")]  # the interpreter checks


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def test_dry_run_prints_every_step_and_changes_nothing(env: dict[str, str], root: Path) -> None:
    out = install(env, "--root", str(root), "--dry-run").stdout
    for step in (f"+ install -D -m 0644 {REPO}/systemd/edgerec.sysusers.conf {root}/etc/sysusers.d/edgerec.conf",
                 f"+ systemd-sysusers --root={root} edgerec.conf",
                 f"+ python3 -m venv {root}/opt/edgerec/venv",
                 f"+ {root}/opt/edgerec/venv/bin/python -m pip install --quiet --disable-pip-version-check "
                 f"--upgrade {REPO}",
                 f"+ install -d -m 0770 {root}/etc/edgerec",
                 f"+ write {root}/etc/edgerec/config.toml from",
                 f"+ install -D -m 0644 {REPO}/systemd/edgerec.service {root}/etc/systemd/system/edgerec.service",
                 f"+ systemctl --root={root} enable edgerec.service"):
        assert step in out, step
    assert files(root) == set() and calls(env) == []


def test_dry_run_on_the_live_system_shows_reload_enable_restart(env: dict[str, str]) -> None:
    out = install(env, "--dry-run").stdout
    lines = [line for line in out.splitlines() if line.startswith("+ systemctl")]
    assert lines == ["+ systemctl daemon-reload", "+ systemctl enable edgerec.service",
                     "+ systemctl restart edgerec.service"]
    assert "+ python3 -m venv /opt/edgerec/venv" in out and calls(env) == []
    assert "+ install -d -m 0770 -o root -g edgerec /etc/edgerec" in out  # the service may save its config


def test_install_into_root(env: dict[str, str], root: Path) -> None:
    install(env, "--root", str(root))
    assert files(root) == {"etc/sysusers.d/edgerec.conf", "etc/systemd/system/edgerec.service",
                           "etc/edgerec/config.toml", "opt/edgerec/venv/bin/python", "opt/edgerec/venv/bin/edgerec"}
    assert (root / "etc/systemd/system/edgerec.service").read_text() == UNIT_SOURCE.read_text()
    config = root / "etc/edgerec/config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o770  # group-writable: the web page saves regions
    assert all(line.startswith("#") for line in config.read_text().splitlines())  # placeholder: all defaults
    assert calls(env) == [f"systemd-sysusers --root={root} edgerec.conf",
                          f"python3 -m venv {root}/opt/edgerec/venv",
                          f"venv-python -m pip install --quiet --disable-pip-version-check --upgrade {REPO}",
                          f"systemctl --root={root} enable edgerec.service"]


def test_config_comes_from_edgerec_config_service_when_it_exists(env: dict[str, str], root: Path) -> None:
    install({**env, "FAKE_DEFAULTS": "# every setting\nsource = 0"}, "--root", str(root))
    assert (root / "etc/edgerec/config.toml").read_text() == "# every setting\nsource = 0\n"


def test_installed_config_is_the_real_printed_service_example_and_passes_check_config(env: dict[str, str],
                                                                               root: Path) -> None:
    printed = run_cli("config", "--service")
    assert printed.returncode == 0
    install({**env, "FAKE_DEFAULTS": printed.stdout.rstrip("\n")}, "--root", str(root))
    config = root / "etc/edgerec/config.toml"
    assert config.read_text() == printed.stdout
    checked = run_cli("check-config", str(config))
    assert checked.returncode == 0 and checked.stdout.startswith(f"{config}: ok\n"), checked.stderr


def test_second_run_keeps_the_config_and_the_venv_and_restores_the_unit(env: dict[str, str], root: Path) -> None:
    install(env, "--root", str(root))
    config, unit = root / "etc/edgerec/config.toml", root / "etc/systemd/system/edgerec.service"
    config.write_text('source = "rtsp://cam.local/stream"\n')
    config.parent.chmod(0o755)  # as an installer older than the web page's writes left it
    unit.write_text("edited in place\n")
    Path(env["FAKE_LOG"]).unlink()
    out = install(env, "--root", str(root)).stdout
    assert config.read_text() == 'source = "rtsp://cam.local/stream"\n' and "kept as it is" in out
    assert unit.read_text() == UNIT_SOURCE.read_text()
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o770
    assert not any("-m venv" in call for call in calls(env))  # the venv is upgraded, not recreated
    assert any("pip install" in call for call in calls(env))


def test_upgrade_keeps_an_accelerated_onnxruntime_build(env: dict[str, str], root: Path) -> None:
    """A Jetson's onnxruntime-gpu (or an Intel box's onnxruntime-openvino) survives the upgrade."""
    install({**env, "FAKE_REPLACED": "onnxruntime"}, "--root", str(root))
    assert f"{PIP} --upgrade {REPO}" in calls(env)  # a new venv gets the CPU wheels whatever the system has
    Path(env["FAKE_LOG"]).unlink()
    out = install({**env, "FAKE_REPLACED": "onnxruntime"}, "--root", str(root)).stdout

    assert "keeps the venv's own build of onnxruntime" in out
    assert [call for call in calls(env) if call.startswith("venv-python")] == [
        f"venv-python {HELPER} replaced",
        f"{PIP} --upgrade --no-deps {REPO}",
        f"venv-python {HELPER} requirements --except onnxruntime",
        f'{PIP} numpy>=1.24 tomli>=1.1; python_version < "3.11"',
    ]


def test_venv_requirements_names_a_module_that_another_build_provides(tmp_path: Path) -> None:
    """The helper, run by a real venv's python: an `onnxruntime` module without the onnxruntime distribution."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "onnxruntime").mkdir()
    (site / "onnxruntime" / "__init__.py").write_text("")  # as onnxruntime-gpu leaves it, under another name
    (site / "onnxruntime_gpu-1.23.0.dist-info").mkdir()
    (site / "onnxruntime_gpu-1.23.0.dist-info" / "METADATA").write_text("Name: onnxruntime-gpu\nVersion: 1.23.0\n")

    found = subprocess.run([str(venv / "bin" / "python"), str(HELPER), "replaced"], capture_output=True, text=True,
                           timeout=60)
    assert (found.returncode, found.stdout) == (0, "onnxruntime\n")  # no cv2 in this venv: nothing else replaced
    bare = subprocess.run([str(venv / "bin" / "python"), str(HELPER), "requirements"], capture_output=True, text=True,
                          timeout=60)
    assert bare.returncode == 2 and "edgerec is not installed in" in bare.stderr


def test_venv_requirements_lists_edgerec_requirements_without_extras_or_the_kept_ones() -> None:
    listed = subprocess.run([sys.executable, str(HELPER), "requirements", "--except", "onnxruntime"],
                            capture_output=True, text=True, timeout=60)
    names = [line.split(">")[0].split(";")[0].strip() for line in listed.stdout.splitlines()]
    assert listed.returncode == 0
    assert "onnxruntime" not in names and {"numpy", "opencv-python-headless", "pydantic"} <= set(names)
    assert not {"torch", "paho-mqtt", "pytest"} & set(names)  # extras are not the service's business


def test_prefix_moves_the_venv_and_execstart(env: dict[str, str], root: Path) -> None:
    install(env, "--root", str(root), "--prefix", "/srv/edgerec", "--system-site-packages")
    unit = (root / "etc/systemd/system/edgerec.service").read_text()
    assert "ExecStart=/srv/edgerec/venv/bin/edgerec run --config /etc/edgerec/config.toml" in unit
    assert (root / "srv/edgerec/venv/bin/python").exists()
    assert f"python3 -m venv --system-site-packages {root}/srv/edgerec/venv" in calls(env)


def test_uninstall_keeps_config_and_state(env: dict[str, str], root: Path) -> None:
    install(env, "--root", str(root))
    (root / "var/lib/edgerec").mkdir(parents=True)
    (root / "var/lib/edgerec/events.jsonl").write_text("{}\n")
    install(env, "--root", str(root), "--uninstall")
    assert files(root) == {"etc/sysusers.d/edgerec.conf", "etc/edgerec/config.toml", "var/lib/edgerec/events.jsonl"}
    assert not (root / "opt/edgerec").exists()
    assert calls(env)[-1] == f"systemctl --root={root} disable edgerec.service"
    again = install(env, "--root", str(root), "--uninstall").stdout  # idempotent
    assert "(no " in again and "(absent)" in again


def test_uninstall_purge_removes_config_state_and_logs(env: dict[str, str], root: Path) -> None:
    install(env, "--root", str(root))
    for directory in ("var/lib/edgerec", "var/log/edgerec"):
        (root / directory).mkdir(parents=True)
    install(env, "--root", str(root), "--uninstall", "--purge")
    assert files(root) == set() and not (root / "etc/edgerec").exists() and not (root / "var/lib/edgerec").exists()


@pytest.mark.parametrize("args, message", [
    (["--frobnicate"], "unknown option: --frobnicate"),
    (["--purge"], "--purge only goes with --uninstall"),
    (["--prefix", "relative/dir"], "--prefix must be an absolute path"),
    (["--prefix", "/home/pi/edgerec"], "the service cannot see it"),
    (["--python", "/nonexistent/python3"], "/nonexistent/python3 not found"),
    (["--source", "/nonexistent/edgerec.whl"], "--source /nonexistent/edgerec.whl: no such file"),
])
def test_clear_errors(env: dict[str, str], root: Path, args: list[str], message: str) -> None:
    result = install(env, "--root", str(root), *args, check=False)
    assert result.returncode != 0 and message in result.stderr
    assert files(root) == set()


def test_old_python_is_refused(env: dict[str, str], root: Path) -> None:
    result = install({**env, "FAKE_PY_STATUS": "1"}, "--root", str(root), check=False)
    assert result.returncode != 0 and "needs Python 3.10 or newer" in result.stderr


@pytest.mark.skipif(not (shutil.which("systemctl") and shutil.which("systemd-sysusers")),
                    reason="systemctl/systemd-sysusers not installed (Debian package: systemd)")
def test_real_systemctl_and_sysusers_in_root_mode(env: dict[str, str], root: Path) -> None:
    fakebin = env["PATH"].split(":")[0]
    os.remove(f"{fakebin}/systemctl")
    os.remove(f"{fakebin}/systemd-sysusers")
    install(env, "--root", str(root))
    wants = root / "etc/systemd/system/multi-user.target.wants/edgerec.service"
    assert os.readlink(wants) == "/etc/systemd/system/edgerec.service"
    passwd = (root / "etc/passwd").read_text()
    assert "edgerec:x:" in passwd and ":/var/lib/edgerec:" in passwd
    groups = (root / "etc/group").read_text().splitlines()
    assert any(line.startswith("video:") and "edgerec" in line for line in groups)
    install(env, "--root", str(root), "--uninstall")
    assert not wants.exists() and not wants.is_symlink()


def test_script_parses_and_is_shellcheck_clean() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (Debian package: shellcheck)")
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
