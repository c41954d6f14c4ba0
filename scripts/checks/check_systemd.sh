#!/usr/bin/env bash
# The service under a real systemd (docs/reliability.md, "Under a real systemd"), as root on a Debian or Ubuntu
# host whose PID 1 need not be systemd (a CI container, a VM):
#   a minimal Debian 12 (systemd 252, no procps) is debootstrapped once into CACHE; each run copies it to
#   CACHE/run (every run starts from the same clean root) and boots that copy three times with systemd-nspawn,
#   the disk kept between the boots: (1) install, the unit enabled, not started; (2) the unit started by the
#   boot itself, then the steps; (3) a reboot: started by the boot again, with what (2) saved. In each boot its
#   systemd runs scripts/checks/check_systemd.py PHASE from a copy of this checkout (git's tracked and
#   untracked-but-not-ignored files), printing PASS/FAIL per step; the container exits with its status.
# The container shares the host's network (no --private-network): PyPI, and the service's web port on loopback.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: check_systemd.sh [options]

  --cache DIR     keep the Debian root here, reused by the next run, and the last run's outputs (CACHE/out)
                  (default: $EDGEREC_NSPAWN_CACHE, else /var/cache/edgerec-nspawn)
  --mirror URL    Debian mirror for debootstrap (default: http://deb.debian.org/debian)
  --timeout S     end the container after S seconds, the check failed (default: 900)
  -h, --help      this text

Prints each step's PASS/FAIL line, then CACHE/out/summary.txt; CACHE/out/journal-PHASE.txt hold the unit's
journal of each boot, CACHE/out/console-PHASE.log the container's console. --timeout is per boot.
Exits 1 when a step failed or the container did not finish in time.
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${EDGEREC_NSPAWN_CACHE:-/var/cache/edgerec-nspawn}
MIRROR=http://deb.debian.org/debian
TIMEOUT=900
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates
PHASES=(install boot reboot)

die() { echo "check_systemd.sh: error: $*" >&2; exit 1; }
say() { echo "== $*"; }

parse_args() {
    while (($#)); do
        case $1 in
            --cache) CACHE=${2:?--cache needs a directory}; shift ;;
            --mirror) MIRROR=${2:?--mirror needs a URL}; shift ;;
            --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    [[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a whole number of seconds (got '$TIMEOUT')"
    ROOTFS=$CACHE/bookworm
    RUNROOT=$CACHE/run
    OUT=$CACHE/out
}

host_tools() {
    [[ $EUID -eq 0 ]] || die "must run as root (debootstrap, systemd-nspawn): sudo $0"
    command -v git >/dev/null || die "git not found: the checkout is copied from git's file list (apt install git)"
    if command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null; then return; fi
    say "apt-get install systemd-container debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd-container debootstrap \
        >/dev/null
}

# minbase plus what the service needs: python3-venv for the installer. No procps (no /bin/kill): the unit's
# ExecReload= uses the shell's own kill, and the check shows `systemctl reload` works without it.
# Built once into ROOTFS.partial and renamed when complete, so an interrupted debootstrap is not reused.
debian_root() {
    if [[ -e $ROOTFS/.edgerec-packages && $(cat "$ROOTFS/.edgerec-packages") == "$PACKAGES" ]]; then
        say "Debian 12 root: $ROOTFS (cached)"
        return
    fi
    say "Debian 12 root: debootstrap --variant=minbase bookworm into $ROOTFS ($PACKAGES)"
    local start=$SECONDS
    rm -rf "$ROOTFS.partial" "$ROOTFS"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS.partial" "$MIRROR" >"$CACHE/debootstrap.log" \
        || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    echo "$PACKAGES" >"$ROOTFS.partial/.edgerec-packages"
    mv "$ROOTFS.partial" "$ROOTFS"
    echo "   ($((SECONDS - start)) s)"
}

# The checkout as the container sees it, the command its systemd runs (systemd.run=, no spaces allowed: the
# phase comes from CHECK-OUT/phase), and a fresh copy of the Debian root that the three boots share.
prepare_out() {
    rm -rf "$OUT" "$RUNROOT"
    mkdir -p "$OUT"
    git -c safe.directory="$HERE" -C "$HERE" ls-files -z --cached --others --exclude-standard \
        | (cd "$HERE" && tar --null --files-from=- --ignore-failed-read -cf "$OUT/src.tar" 2>/dev/null)
    cat >"$OUT/run.sh" <<'EOF'
#!/bin/sh
set -e
rm -rf /usr/local/src/edgerec
mkdir -p /usr/local/src/edgerec
tar -xf /check-out/src.tar -C /usr/local/src/edgerec
exec python3 /usr/local/src/edgerec/scripts/checks/check_systemd.py /check-out "$(cat /check-out/phase)"
EOF
    chmod +x "$OUT/run.sh"
    local start=$SECONDS
    cp -a "$ROOTFS" "$RUNROOT"
    say "root for this run: $RUNROOT (a copy of $ROOTFS, $((SECONDS - start)) s)"
}

# The host's CA bundle replaces the container's, so a host behind a TLS-inspecting proxy reaches PyPI too.
# No --volatile: what a boot writes (the install, the config, recordings, models) is there at the next one.
boot() {
    local phase=$1
    local binds=(--bind="$OUT:/check-out")
    if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
        binds+=(--bind-ro=/etc/ssl/certs/ca-certificates.crt)
    fi
    echo "$phase" >"$OUT/phase"
    say "boot $phase (systemd-nspawn --boot on $RUNROOT), scripts/checks/check_systemd.py $phase under its systemd"
    local start=$SECONDS status=0
    timeout --kill-after=30 "$TIMEOUT" systemd-nspawn --quiet --directory="$RUNROOT" \
        --register=no --keep-unit "${binds[@]}" --boot \
        systemd.unit=multi-user.target systemd.wants=kernel-command-line.service systemd.show_status=false \
        systemd.run=/check-out/run.sh systemd.run_success_action=exit systemd.run_failure_action=exit \
        systemd.mask=console-getty.service </dev/null \
        | tee "$OUT/console-$phase.log" | sed -nu -E 's/^.*run\.sh\[[0-9]+\]: ((PASS|FAIL) [0-9]+\. .*)$/\1/p' \
        || status=${PIPESTATUS[0]}
    echo "   (container, boot $phase: $((SECONDS - start)) s, exit status $status)"
    return "$status"
}

boots() {
    local phase
    for phase in "${PHASES[@]}"; do
        boot "$phase" || return $?
    done
}

report() {
    local status=$1
    say "summary ($OUT/summary.txt; the unit's journal of each boot: $OUT/journal-*.txt)"
    if [[ -s $OUT/summary.txt ]]; then
        cat "$OUT/summary.txt"
    else
        echo "   (no summary: the check did not finish; the container's console ends with:)"
        tail -n 40 "$OUT"/console-*.log 2>/dev/null || true
    fi
    if ((status == 124 || status == 137)); then die "the container did not finish within --timeout $TIMEOUT s"; fi
    ((status == 0)) || die "a step failed (exit status $status)"
}

main() {
    parse_args "$@"
    host_tools
    local start=$SECONDS status=0
    debian_root
    prepare_out
    boots || status=$?
    rm -rf "$RUNROOT"
    echo "   (total: $((SECONDS - start)) s)"
    report "$status"
}

main "$@"
