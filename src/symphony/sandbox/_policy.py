"""What a sandboxed program may use: its resource limits and its seccomp filter.

The filter is defence in depth behind the namespaces (see ``_jail``): it shrinks the kernel
surface a program can reach (debugging, eBPF, perf, keyrings, io_uring, module loading, mounts
and namespaces) and refuses every socket family but ``AF_UNIX``, so even the sandbox's own
loopback is closed while ``asyncio``'s self-pipe (a unix ``socketpair``) still works. It is built
with libseccomp (through ``pyseccomp``), which also kills any syscall made through a foreign
ABI (i386 ``int 0x80``, x32) instead of letting it slip past the native syscall numbers.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import socket
from dataclasses import dataclass
from typing import Final

from symphony.errors import ConfigError

# Syscalls refused with EPERM. Most already need a capability the sandbox does not have; the filter
# keeps their kernel code unreachable all the same (it is where sandbox escapes usually start).
DENIED_SYSCALLS: Final = (
    # another process's memory, or the kernel's: debugging, eBPF, perf, keyrings, modules, kexec
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "io_uring_setup", "io_uring_enter", "io_uring_register",
    # the namespaces and mounts bubblewrap set up stay as they are
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "name_to_handle_at", "open_by_handle_at",
    # the host's clock, name, swap, accounting, console and power
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "swapon",
    "swapoff", "acct", "syslog", "quotactl", "vhangup", "reboot",
)


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource limits of one sandboxed run (all per run, none shared between runs).

    ``memory_bytes`` is each process's address space (RLIMIT_AS); ``max_processes`` counts the
    processes and threads of the sandbox's own user namespace (RLIMIT_NPROC), so at worst a run
    holds ``max_processes * memory_bytes + scratch_bytes`` of memory. ``file_bytes`` caps any one
    file it writes (RLIMIT_FSIZE), ``scratch_bytes`` its private ``/tmp`` (a sized tmpfs),
    ``open_files`` its descriptors (RLIMIT_NOFILE), ``output_bytes`` the tail of its output we keep.
    """

    memory_bytes: int = 1 << 30
    max_processes: int = 16
    file_bytes: int = 1 << 20
    scratch_bytes: int = 16 << 20
    open_files: int = 64
    output_bytes: int = 4096

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"sandbox limit {name} must be a positive int, not {value!r}")

    def prlimit_args(self, timeout_s: float) -> list[str]:
        """util-linux ``prlimit`` options for these limits. CPU time gets a soft limit a second past
        the wall-clock timeout (SIGXCPU, a named reason) and a hard one a second later (SIGKILL)."""
        cpu_s = math.ceil(timeout_s) + 1
        return [f"--cpu={cpu_s}:{cpu_s + 1}", f"--as={self.memory_bytes}", f"--fsize={self.file_bytes}",
                f"--nofile={self.open_files}", f"--nproc={self.max_processes}", "--core=0"]


@functools.cache
def seccomp_filter() -> bytes:
    """The compiled BPF program bubblewrap loads with ``--seccomp`` (built once per process).

    Raises ``ImportError`` or ``OSError`` when libseccomp is missing (``_jail`` reports it).
    """
    import pyseccomp  # type: ignore[import-untyped]  # loads libseccomp.so.2 with ctypes at import

    rules = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        rules.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
    rules.add_rule(pyseccomp.ERRNO(errno.EAFNOSUPPORT), "socket", pyseccomp.Arg(0, pyseccomp.NE, socket.AF_UNIX))
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as sink:  # a filter is a few hundred bytes: the pipe buffer holds it
        rules.export_bpf(sink)
    with os.fdopen(read_end, "rb") as source:
        return source.read()


__all__ = ["DENIED_SYSCALLS", "Limits", "seccomp_filter"]
