"""Run a command under the seccomp side of a systemd unit, on a machine where systemd is not PID 1.

systemd enforces SystemCallFilter=, SystemCallArchitectures=native, MemoryDenyWriteExecute=yes and
RestrictAddressFamilies= with seccomp filters it builds through libseccomp. This reads those settings
from the unit file, expands the system call groups with `systemd-analyze syscall-filter` (so the sets are
the installed systemd's own), loads the same filters through libseccomp with ctypes and execs the command
under them:

- SystemCallFilter=: an allow list (first line) minus later `~` lines; anything else kills the process
  with SIGSYS, as systemd does without SystemCallErrorNumber=. Other architectures' calls kill too.
- MemoryDenyWriteExecute=yes: mmap() with PROT_WRITE|PROT_EXEC, mprotect()/pkey_mprotect() with
  PROT_EXEC and shmat() with SHM_EXEC fail with EPERM (systemd's seccomp_memory_deny_write_execute()).
- RestrictAddressFamilies=: socket() with any other family fails with EAFNOSUPPORT.
- Environment=: set for the command.

It does not switch user (User=), mount namespaces (ProtectSystem= ...) or device cgroups (DeviceAllow=).

Usage: python tests/unit_sandbox.py UNIT_FILE -- COMMAND [ARG...]
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import subprocess
import sys
from pathlib import Path

ACT_KILL_PROCESS = 0x80000000
ACT_ALLOW = 0x7FFF0000
CMP_GE = 5
CMP_EQ = 4
CMP_MASKED_EQ = 7
SHM_EXEC = 0o100000
AF_MAX = 46  # one past the highest family Linux defines (AF_MCTP = 45)


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """Every `Key=value` of the unit, values in file order (enough for the keys read here)."""
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith(("#", ";", "[")):
            settings.setdefault(key, []).append(value.strip())
    return settings


def expand(names: list[str]) -> set[str]:
    """System call names for names and @groups, as this machine's systemd defines the groups."""
    calls: set[str] = set()
    for name in names:
        if not name.startswith("@"):
            calls.add(name)
            continue
        listing = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True,
                                 check=True).stdout.splitlines()
        entries = [e.strip() for e in listing[1:] if e.strip() and not e.strip().startswith("#")]
        calls |= expand(entries)
    return calls


def allowed_syscalls(lines: list[str]) -> set[str]:
    if not lines or lines[0].startswith("~"):
        raise SystemExit("unit_sandbox: the unit's first SystemCallFilter= must be an allow list")
    allowed = expand(lines[0].split())
    for line in lines[1:]:
        if line.startswith("~"):
            allowed -= expand(line[1:].split())
        else:
            allowed |= expand(line.split())
    return allowed


class Seccomp:
    """The few libseccomp calls systemd uses, through ctypes."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        self.lib.seccomp_init.restype = ctypes.c_void_p
        self.lib.seccomp_init.argtypes = [ctypes.c_uint32]
        self.lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        self.lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                                    ctypes.POINTER(ArgCmp)]
        self.lib.seccomp_load.argtypes = [ctypes.c_void_p]
        self.lib.seccomp_release.argtypes = [ctypes.c_void_p]

    def number(self, name: str) -> int | None:
        nr = self.lib.seccomp_syscall_resolve_name(name.encode())
        return None if nr < 0 else nr  # unknown here, or a pseudo number for another architecture

    def load(self, default: int, rules: list[tuple[int, int, list[ArgCmp]]]) -> None:
        ctx = self.lib.seccomp_init(default)
        if not ctx:
            raise SystemExit("unit_sandbox: seccomp_init failed")
        try:
            for action, nr, cmps in rules:
                array = (ArgCmp * len(cmps))(*cmps) if cmps else None
                rc = self.lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array)
                if rc < 0:
                    raise SystemExit(f"unit_sandbox: seccomp_rule_add({nr}) failed: {os.strerror(-rc)}")
            rc = self.lib.seccomp_load(ctx)
            if rc < 0:
                raise SystemExit(f"unit_sandbox: seccomp_load failed: {os.strerror(-rc)}")
        finally:
            self.lib.seccomp_release(ctx)


def syscall_filter_rules(sc: Seccomp, names: set[str]) -> list[tuple[int, int, list[ArgCmp]]]:
    numbers = {sc.number(n) for n in names} - {None}
    return [(ACT_ALLOW, nr, []) for nr in sorted(numbers)]


def deny_write_execute_rules(sc: Seccomp) -> list[tuple[int, int, list[ArgCmp]]]:
    wx = mmap.PROT_WRITE | mmap.PROT_EXEC
    rules = [(act_errno(errno.EPERM), sc.number("mmap"), [ArgCmp(2, CMP_MASKED_EQ, wx, wx)])]
    for name in ("mprotect", "pkey_mprotect"):
        rules.append((act_errno(errno.EPERM), sc.number(name), [ArgCmp(2, CMP_MASKED_EQ, mmap.PROT_EXEC,
                                                                               mmap.PROT_EXEC)]))
    rules.append((act_errno(errno.EPERM), sc.number("shmat"), [ArgCmp(2, CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)]))
    return [rule for rule in rules if rule[1] is not None]


def address_family_rules(sc: Seccomp, families: list[str]) -> list[tuple[int, int, list[ArgCmp]]]:
    allowed = {int(getattr(socket, name)) for name in families}
    refuse = act_errno(errno.EAFNOSUPPORT)
    nr = sc.number("socket")
    rules = [(refuse, nr, [ArgCmp(0, CMP_EQ, family, 0)]) for family in range(AF_MAX) if family not in allowed]
    return rules + [(refuse, nr, [ArgCmp(0, CMP_GE, AF_MAX, 0)])]


def apply(unit: Path) -> None:
    settings = unit_settings(unit)
    if settings.get("SystemCallArchitectures") != ["native"]:
        raise SystemExit("unit_sandbox: expected SystemCallArchitectures=native")
    sc = Seccomp()
    if settings.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        sc.load(ACT_ALLOW, deny_write_execute_rules(sc))
    if "RestrictAddressFamilies" in settings:
        sc.load(ACT_ALLOW, address_family_rules(sc, settings["RestrictAddressFamilies"][-1].split()))
    # Last: loading a filter is itself a system call the allow list may not include.
    sc.load(ACT_KILL_PROCESS, syscall_filter_rules(sc, allowed_syscalls(settings.get("SystemCallFilter", []))))


def environment(unit: Path) -> dict[str, str]:
    """os.environ plus the unit's Environment= assignments (simple KEY=VALUE words, no quoting)."""
    pairs = [word.partition("=") for line in unit_settings(unit).get("Environment", []) for word in line.split()]
    return {**os.environ, **{key: value for key, _, value in pairs}}


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit(__doc__)
    unit = Path(argv[0])
    env = environment(unit)
    apply(unit)
    os.execvpe(argv[2], argv[2:], env)


if __name__ == "__main__":
    main(sys.argv[1:])
