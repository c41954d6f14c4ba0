#!/usr/bin/env bash
# Install edgerec as a systemd service (docs/deployment.md):
#   venv under PREFIX/venv with edgerec installed from this checkout (or --source),
#   the `edgerec` system user (systemd-sysusers), /etc/edgerec (root:edgerec 0770) with
#   /etc/edgerec/config.toml only if absent,
#   systemd/edgerec.service in /etc/systemd/system, enabled and (re)started.
# Running it again upgrades in place and never touches an existing config.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: install-service.sh [options]
       install-service.sh --uninstall [--purge] [options]

  --prefix DIR            install the venv in DIR/venv (default: /opt/edgerec)
  --source PATH           what pip installs: a checkout or a wheel (default: the checkout holding this script)
  --python PYTHON         interpreter for the venv, 3.10 or newer (default: python3)
  --system-site-packages  let the venv see apt-installed modules (Raspberry Pi: python3-picamera2;
                          Jetson: an onnxruntime-gpu build installed system-wide)
  --no-start              install and enable, but do not (re)start the service now
  --uninstall             stop and disable the service, remove the unit and the venv; keep config, state, logs
  --purge                 with --uninstall: also remove /etc/edgerec, /var/lib/edgerec and /var/log/edgerec
  --root DIR              install under DIR instead of / (staging, tests): no root needed, systemctl only
                          enables (`systemctl --root`); the venv refers to DIR and is not relocatable
  --dry-run               print every step without doing it
  -h, --help              this text
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/edgerec
SOURCE=$HERE
PYTHON=python3
VENV_OPTIONS=()
START=1
ACTION=install
PURGE=""
ROOT=""
DRY_RUN=""

die() { echo "install-service.sh: error: $*" >&2; exit 1; }
say() { echo "== $*"; }

# Run a command, or only print it under --dry-run. Every change to the system goes through here.
run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [[ -z $DRY_RUN ]]; then "$@"; fi
}

parse_args() {
    while (($#)); do
        case $1 in
            --prefix) PREFIX=${2:?--prefix needs a directory}; shift ;;
            --source) SOURCE=${2:?--source needs a path}; shift ;;
            --python) PYTHON=${2:?--python needs an interpreter}; shift ;;
            --system-site-packages) VENV_OPTIONS=(--system-site-packages) ;;
            --no-start) START="" ;;
            --uninstall) ACTION=uninstall ;;
            --purge) PURGE=1 ;;
            --root) ROOT=${2:?--root needs a directory}; shift ;;
            --dry-run) DRY_RUN=1 ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    [[ $PREFIX =~ ^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$ && $PREFIX != *..* ]] \
        || die "--prefix must be an absolute path of letters, digits, '.', '_', '-' below / (got '$PREFIX')"
    case $PREFIX/ in
        /home/*|/root/*|/run/user/*|/tmp/*|/var/tmp/*)
            die "--prefix $PREFIX: the service cannot see it (ProtectHome=yes, PrivateTmp=yes); use e.g. /opt/edgerec" ;;
    esac
    if [[ -n $PURGE && $ACTION != uninstall ]]; then die "--purge only goes with --uninstall"; fi
    if [[ -n $ROOT ]]; then
        [[ -d $ROOT ]] || die "--root $ROOT: no such directory"
        ROOT=$(cd "$ROOT" && pwd)
    fi
    VENV=$ROOT$PREFIX/venv
    CONFIG_DIR=$ROOT/etc/edgerec
    CONFIG=$CONFIG_DIR/config.toml
    UNIT=$ROOT/etc/systemd/system/edgerec.service
    SYSUSERS=$ROOT/etc/sysusers.d/edgerec.conf
}

check_environment() {
    if [[ -z $ROOT && -z $DRY_RUN && $EUID -ne 0 ]]; then
        die "must run as root to install a system service: sudo $0 $*  (or try --dry-run, or --root DIR)"
    fi
    [[ $ACTION == uninstall ]] && return
    [[ -f $HERE/systemd/edgerec.service && -f $HERE/systemd/edgerec.sysusers.conf ]] \
        || die "$HERE/systemd/ lacks edgerec.service or edgerec.sysusers.conf: run the script from an edgerec checkout"
    [[ -e $SOURCE ]] || die "--source $SOURCE: no such file or directory"
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.10 or newer (Debian: apt install python3 python3-venv)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$PYTHON is $("$PYTHON" -V 2>&1); edgerec needs Python 3.10 or newer (--python PYTHON)"
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
        || die "$PYTHON cannot create virtual environments (Debian: apt install python3-venv)"
}

create_user() {
    say "service user edgerec (systemd-sysusers)"
    run install -D -m 0644 "$HERE/systemd/edgerec.sysusers.conf" "$SYSUSERS"
    if [[ -n $ROOT ]]; then
        run systemd-sysusers --root="$ROOT" edgerec.conf
    else
        run systemd-sysusers edgerec.conf
    fi
}

# An upgrade keeps what the user swapped into the venv: an accelerated onnxruntime (Jetson: onnxruntime-gpu;
# Intel: onnxruntime-openvino) or OpenCV (JetPack's, with GStreamer, seen through --system-site-packages once
# opencv-python-headless is uninstalled) provides the module of one of edgerec's requirements under another
# distribution name, and pip would install the CPU wheel over it. Then edgerec goes in without its
# dependencies and the others are installed around the kept build. A new venv gets the CPU wheels.
install_venv() {
    say "virtual environment $VENV"
    local upgrade=""
    if [[ -x $VENV/bin/python ]]; then
        echo "   (exists: upgrading edgerec in it)"
        upgrade=1
    else
        run "$PYTHON" -m venv "${VENV_OPTIONS[@]}" "$VENV"
    fi
    local pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
    local helper=$HERE/scripts/venv_requirements.py replaced=() listed requirements=()
    if [[ -n $upgrade ]]; then
        listed=$("$VENV/bin/python" "$helper" replaced) || die "$helper could not inspect $VENV"
        [[ -z $listed ]] || mapfile -t replaced <<<"$listed"
    fi
    if ((${#replaced[@]} == 0)); then
        run "${pip[@]}" --upgrade "$SOURCE"
        return
    fi
    echo "   (keeps the venv's own build of ${replaced[*]}: edgerec goes in without its dependencies, the others after it)"
    run "${pip[@]}" --upgrade --no-deps "$SOURCE"
    if [[ -n $DRY_RUN ]]; then
        echo "+ ${pip[*]} <edgerec's requirements except ${replaced[*]}>"
        return
    fi
    listed=$("$VENV/bin/python" "$helper" requirements --except "${replaced[@]}") || die "$helper could not list edgerec's requirements"
    [[ -z $listed ]] || mapfile -t requirements <<<"$listed"
    if ((${#requirements[@]})); then run "${pip[@]}" "${requirements[@]}"; fi
}

# The service may replace the config (the web page saves drawn regions and accepted models: a temp file
# renamed over config.toml, a .bak beside it), so its folder is root:edgerec 0770, as the unit's
# ConfigurationDirectoryMode= says; systemd leaves an existing folder's owner and mode alone. Set on every
# run, which also upgrades a folder made by an older installer (root:root 0755).
config_folder() {
    say "configuration folder $CONFIG_DIR (root:edgerec 0770: the web page saves regions and models into it)"
    if [[ -n $ROOT ]]; then
        run install -d -m 0770 "$CONFIG_DIR"  # under --root the group lives in ROOT/etc/group only
    else
        run install -d -m 0770 -o root -g edgerec "$CONFIG_DIR"
    fi
}

# The config belongs to the user: written once, never overwritten, readable by root and the service
# group only (it may hold the web token and the MQTT password). It is `edgerec config --service`: the
# defaults, recording in segments kept within a budget. Where that command is missing (an older
# edgerec) the file is a commented placeholder.
write_config() {
    say "configuration $CONFIG"
    if [[ -e $CONFIG ]]; then
        echo "   (exists: kept as it is)"
        return
    fi
    local generator="$VENV/bin/edgerec config --service"
    if [[ -n $DRY_RUN ]]; then
        echo "+ write $CONFIG from \`$generator\` (or a commented placeholder if that command does not exist)"
        return
    fi
    mkdir -p "$(dirname "$CONFIG")"
    local tmp
    tmp=$(mktemp "$CONFIG.XXXXXX")
    if ! "$VENV/bin/edgerec" config --service >"$tmp" 2>/dev/null || [[ ! -s $tmp ]]; then
        placeholder_config >"$tmp"
        echo "   (\`$generator\` not available: wrote a commented placeholder)"
    fi
    chmod 0640 "$tmp"
    if [[ -z $ROOT ]]; then chgrp edgerec "$tmp"; fi  # under --root the group lives in ROOT/etc/group only
    mv "$tmp" "$CONFIG"
    echo "+ wrote $CONFIG"
}

placeholder_config() {
    cat <<'EOF'
# edgerec configuration for the systemd service (`edgerec run --config /etc/edgerec/config.toml`).
# Written once by scripts/install-service.sh and never overwritten: it is yours to edit.
# No settings here means edgerec's defaults. `edgerec config --defaults` prints every setting with
# its description; `edgerec check-config /etc/edgerec/config.toml` checks this file before a restart.
EOF
}

install_unit() {
    say "unit $UNIT"
    run install -D -m 0644 "$HERE/systemd/edgerec.service" "$UNIT"
    if [[ $PREFIX != /opt/edgerec ]]; then
        run sed -i "s|^ExecStart=/opt/edgerec/|ExecStart=$PREFIX/|" "$UNIT"
    fi
}

activate() {
    say "enable${START:+ and (re)start} edgerec.service"
    if [[ -n $ROOT ]]; then
        run systemctl --root="$ROOT" enable edgerec.service
        return
    fi
    run systemctl daemon-reload
    run systemctl enable edgerec.service
    if [[ -n $START ]]; then
        run systemctl restart edgerec.service
    fi
}

install_all() {
    create_user
    install_venv
    config_folder
    write_config
    install_unit
    activate
    say "done. Status: systemctl status edgerec   Logs: journalctl -u edgerec -f"
}

uninstall_all() {
    say "stop and disable edgerec.service"
    if [[ -e $UNIT ]]; then
        if [[ -n $ROOT ]]; then
            run systemctl --root="$ROOT" disable edgerec.service
        else
            run systemctl disable --now edgerec.service
        fi
        run rm -f "$UNIT"
        if [[ -z $ROOT ]]; then run systemctl daemon-reload; fi
    else
        echo "   (no $UNIT)"
    fi
    say "virtual environment $VENV"
    if [[ -e $VENV ]]; then run rm -rf "$VENV"; else echo "   (absent)"; fi
    if [[ -d $ROOT$PREFIX ]]; then run rmdir --ignore-fail-on-non-empty "$ROOT$PREFIX"; fi
    if [[ -z $PURGE ]]; then
        say "kept: $ROOT/etc/edgerec (config), $ROOT/var/lib/edgerec (state), $ROOT/var/log/edgerec (logs); --purge removes them"
        return
    fi
    say "purge config, state and logs"
    local dir
    for dir in "$ROOT/etc/edgerec" "$ROOT/var/lib/edgerec" "$ROOT/var/log/edgerec" "$SYSUSERS"; do
        if [[ -e $dir ]]; then run rm -rf "$dir"; fi
    done
    echo "   (the edgerec user stays, as system users should: its id may own files elsewhere)"
}

main() {
    parse_args "$@"
    check_environment "$@"
    if [[ $ACTION == uninstall ]]; then uninstall_all; else install_all; fi
}

main "$@"
