"""Run an OpenAI python grader (`source` defining `grade(sample, item) -> float`) in a locked-down child process.

A python grader is code from a file the user may have downloaded, so it never runs in ftcli's own process. Each
call starts a fresh `python -I -S` (no environment, no user site, cwd an empty temporary folder, its own session)
running `_sandbox_child.py`, which confines itself before it compiles the grader:

- resource limits: CPU seconds, address space (memory), no file may grow (`RLIMIT_FSIZE` 0), no core dumps, few fds;
- Landlock: the filesystem is read-only, and only the Python installation (its stdlib and site-packages, so graders
  can import numpy & co. as on OpenAI) and the system's shared libraries are visible at all; where the kernel's
  Landlock is new enough, TCP bind/connect and signals to processes outside the sandbox are denied too;
- seccomp (a BPF filter built here): no sockets of any family, no fork/vfork/clone of processes (threads are
  allowed), no exec, no ptrace or other processes' memory, no signals but to itself, no chmod/chown/xattr/utime,
  no mounts or namespaces, no io_uring/bpf/perf/keyrings, no raising its own limits, no 32-bit or x32 syscall ABI
  (the process is killed), and syscalls newer than this table fail with ENOSYS;
- a user+network namespace where the kernel lets an unprivileged process have one (an extra layer, not required).

Landlock and seccomp are required: where either is missing (not Linux, an old or locked-down kernel) python graders
are refused with `SandboxUnavailableError`, never run unconfined. The parent enforces the wall-clock limit (the
whole process group is killed) and caps what the child writes. Input goes in on stdin as JSON; the answer comes
back on the child's stdout as JSON, while the grader's own prints go to the capped stderr.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import functools
import json
import math
import os
import platform
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ftcli.data.errors import FtcliError
from ftcli.data.graders.spec import Grader, GraderError, MultiGrader, PythonGrader

CHILD_SCRIPT = Path(__file__).with_name("_sandbox_child.py")
MAX_SOURCE_BYTES = 256 * 1024  # OpenAI's limit on a python grader's source
STDERR_TAIL_BYTES = 2000  # kept for the message when the child dies without an answer
ANSWER_BYTES = 64 * 1024  # the child's JSON answer is small; more is a grader writing into it

PythonGraderFailure = Literal["runtime", "invalid", "memory", "forbidden", "cpu_time", "wall_time", "output", "crash"]


@dataclass(frozen=True)
class SandboxLimits:
    """What one grader call may use. The times are OpenAI's (2 minutes). Memory (address space) is a quarter of
    OpenAI's 2 GB, because graders run beside training on the same machine, several at once: ample for numpy or
    pandas (they need under 256 MiB), not for a 1 GB string. A grader gets no disk at all (OpenAI's gets 1 GB)."""

    cpu_seconds: int = 120
    wall_seconds: float = 120.0
    memory_mb: int = 512
    output_bytes: int = 1024 * 1024  # everything the grader prints, stdout and stderr together


class PythonGraderError(GraderError):
    """A python grader failed on one sample: its own exception, a forbidden operation, or a limit it ran into.
    `failure` says which, so a caller can tell the grader's bug (runtime, invalid) from a limit."""

    def __init__(self, message: str, *, failure: PythonGraderFailure) -> None:
        super().__init__(message)
        self.failure = failure


class SandboxUnavailableError(FtcliError):
    """This machine can't confine a python grader (no Linux, no Landlock or no seccomp): python graders are refused."""


# --- seccomp -----------------------------------------------------------------------------------------------------

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000
# Syscalls numbered 424 and up are the same on every architecture; the highest this table knows (file_setattr).
# Anything above fails with ENOSYS, so a syscall added to a later kernel is refused until it is reviewed here.
LAST_KNOWN_SYSCALL = 469

# name → number below 424, per architecture (checked against libseccomp's tables); the unified ones follow
_ARCH_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "listen": 50, "accept": 43, "accept4": 288,
        "execve": 59, "execveat": 322, "fcntl": 72, "fork": 57, "vfork": 58, "clone": 56, "kill": 62, "tkill": 200,
        "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "kcmp": 312, "setrlimit": 160, "prlimit64": 302, "setpriority": 141,
        "ioprio_set": 251, "sched_setscheduler": 144, "sched_setparam": 142, "sched_setattr": 314, "mount": 165,
        "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308, "bpf": 321,
        "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249,
        "name_to_handle_at": 303, "open_by_handle_at": 304, "fanotify_init": 300, "fanotify_mark": 301,
        "inotify_init": 253, "inotify_init1": 294, "inotify_add_watch": 254, "chmod": 90, "fchmod": 91,
        "fchmodat": 268, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260, "utime": 132, "utimes": 235,
        "utimensat": 280, "futimesat": 261, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
        "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199, "truncate": 76, "mknod": 133,
        "mknodat": 259, "memfd_create": 319, "shmget": 29, "shmat": 30, "msgget": 68, "semget": 64,
        "mq_open": 240, "mq_unlink": 241, "kexec_load": 246, "kexec_file_load": 320, "reboot": 169,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "swapon": 167, "swapoff": 168, "acct": 163,
        "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159, "sethostname": 170,
        "setdomainname": 171, "syslog": 103, "vhangup": 153, "quotactl": 179, "lookup_dcookie": 212,
        "nfsservctl": 180, "uselib": 134, "ustat": 136, "sysfs": 139, "_sysctl": 156, "personality": 135,
        "modify_ldt": 154, "iopl": 172, "ioperm": 173, "migrate_pages": 256, "move_pages": 279,
    },
    "aarch64": {
        "socket": 198, "socketpair": 199, "connect": 203, "bind": 200, "listen": 201, "accept": 202,
        "accept4": 242, "execve": 221, "fcntl": 25, "execveat": 281, "clone": 220, "kill": 129, "tkill": 130,
        "tgkill": 131,
        "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "kcmp": 272, "setrlimit": 164, "prlimit64": 261, "setpriority": 140,
        "ioprio_set": 30, "sched_setscheduler": 119, "sched_setparam": 118, "sched_setattr": 274, "mount": 40,
        "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219, "add_key": 217, "request_key": 218,
        "name_to_handle_at": 264, "open_by_handle_at": 265, "fanotify_init": 262, "fanotify_mark": 263,
        "inotify_init1": 26, "inotify_add_watch": 27, "fchmod": 52, "fchmodat": 53, "fchown": 55, "fchownat": 54,
        "utimensat": 88, "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14, "lremovexattr": 15,
        "fremovexattr": 16, "truncate": 45, "mknodat": 33, "memfd_create": 279, "shmget": 194, "shmat": 196,
        "msgget": 186, "semget": 190, "mq_open": 180, "mq_unlink": 181, "kexec_load": 104, "kexec_file_load": 294,
        "reboot": 142, "init_module": 105, "finit_module": 273, "delete_module": 106, "swapon": 224,
        "swapoff": 225, "acct": 89, "settimeofday": 170, "clock_settime": 112, "clock_adjtime": 266,
        "adjtimex": 171, "sethostname": 161, "setdomainname": 162, "syslog": 116, "vhangup": 58, "quotactl": 60,
        "lookup_dcookie": 18, "nfsservctl": 42, "personality": 92, "migrate_pages": 238, "move_pages": 239,
    },
}  # fmt: skip
_UNIFIED_SYSCALLS = {
    "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "pidfd_open": 434, "clone3": 435, "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442,
    "quotactl_fd": 443, "memfd_secret": 447, "process_mrelease": 448, "set_mempolicy_home_node": 450,
    "fchmodat2": 452, "setxattrat": 463, "removexattrat": 466, "open_tree_attr": 467, "file_setattr": 469,
}  # fmt: skip

# Refused with EPERM, so the grader sees an ordinary PermissionError. Grouped by what they would let it do.
DENIED_SYSCALLS = (
    # network: every socket family (TCP/UDP, unix, netlink, …)
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # other programs and processes (clone and clone3 are handled apart: threads stay allowed)
    "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "tkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "process_madvise", "process_mrelease", "migrate_pages", "move_pages", "set_mempolicy_home_node",
    # its own limits and priority
    "setrlimit", "prlimit64", "setpriority", "ioprio_set", "sched_setscheduler", "sched_setparam", "sched_setattr",
    # file metadata Landlock does not cover, and files by handle
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
    "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
    "fremovexattr", "setxattrat", "removexattrat", "file_setattr", "truncate", "mknod", "mknodat",
    "name_to_handle_at", "open_by_handle_at", "fanotify_init", "fanotify_mark", "inotify_init", "inotify_init1",
    "inotify_add_watch",
    # state that outlives the process: shared memory, message queues, keyrings
    "memfd_create", "memfd_secret", "shmget", "shmat", "msgget", "semget", "mq_open", "mq_unlink", "keyctl",
    "add_key", "request_key",
    # mounts, namespaces, the kernel itself
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "open_tree", "open_tree_attr", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "quotactl", "quotactl_fd", "bpf",
    "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load",
    "kexec_file_load", "reboot", "init_module", "finit_module", "delete_module", "swapon", "swapoff", "acct",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "syslog",
    "vhangup", "lookup_dcookie", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "personality",
    "modify_ldt", "iopl", "ioperm",
)  # fmt: skip

CLONE_THREAD = 0x00010000
# CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
CLONE_NEW_NAMESPACES = 0x80 | 0x20000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
F_SETOWN, F_SETOWN_EX = 8, 15

_LD_W_ABS, _JEQ, _JGT, _JGE, _JSET, _RET = 0x20, 0x15, 0x25, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|…|K, BPF_RET|K
_RET_KILL_PROCESS, _RET_ALLOW = 0x80000000, 0x7FFF0000
_RET_EPERM, _RET_ENOSYS = 0x00050000 | 1, 0x00050000 | 38  # SECCOMP_RET_ERRNO | errno
# offsets in struct seccomp_data; an argument's low 32 bits come first, both arches being little-endian
_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24


def syscall_numbers(arch: str) -> dict[str, int]:
    """Every syscall this module names, with its number on `arch` (absent where the arch has no such call)."""
    return {**_ARCH_SYSCALLS[arch], **_UNIFIED_SYSCALLS}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_program(arch: str, pid: int) -> bytes:
    """The classic-BPF seccomp filter for a sandboxed grader whose process id is `pid` (signals may go to it alone)."""
    numbers = syscall_numbers(arch)
    deny = _insn(_RET, _RET_EPERM)
    program = [_insn(_LD_W_ABS, _ARCH), _insn(_JEQ, AUDIT_ARCH[arch], 1, 0), _insn(_RET, _RET_KILL_PROCESS)]
    program.append(_insn(_LD_W_ABS, _NR))
    if arch == "x86_64":  # the x32 ABI reaches the same kernel code under other numbers
        program += [_insn(_JGE, X32_SYSCALL_BIT, 0, 1), _insn(_RET, _RET_KILL_PROCESS)]
    program += [_insn(_JGT, LAST_KNOWN_SYSCALL, 0, 1), _insn(_RET, _RET_ENOSYS)]
    # clone3's flags sit in memory a filter can't read: ENOSYS makes glibc fall back to clone, which it can
    program += [_insn(_JEQ, numbers["clone3"], 0, 1), _insn(_RET, _RET_ENOSYS)]
    # clone: a thread (CLONE_THREAD) without new namespaces, nothing else
    program += [
        _insn(_JEQ, numbers["clone"], 0, 5),
        _insn(_LD_W_ABS, _ARG0),
        _insn(_JSET, CLONE_NEW_NAMESPACES, 2, 0),
        _insn(_JSET, CLONE_THREAD, 0, 1),
        _insn(_RET, _RET_ALLOW),
        deny,
    ]
    # fcntl: anything but F_SETOWN / F_SETOWN_EX, which would aim SIGIO at another process
    program += [
        _insn(_JEQ, numbers["fcntl"], 0, 5),
        _insn(_LD_W_ABS, _ARG1),
        _insn(_JEQ, F_SETOWN, 2, 0),
        _insn(_JEQ, F_SETOWN_EX, 1, 0),
        _insn(_RET, _RET_ALLOW),
        deny,
    ]
    for name in ("kill", "tgkill"):  # to itself only (Python's signal module, glibc's raise and abort)
        program += [
            _insn(_JEQ, numbers[name], 0, 4),
            _insn(_LD_W_ABS, _ARG0),
            _insn(_JEQ, pid, 0, 1),
            _insn(_RET, _RET_ALLOW),
            deny,
        ]
    for name in DENIED_SYSCALLS:
        if name in numbers:
            program += [_insn(_JEQ, numbers[name], 0, 1), deny]
    program.append(_insn(_RET, _RET_ALLOW))
    return b"".join(program)


# --- availability ------------------------------------------------------------------------------------------------


def machine_arch() -> str | None:
    """This process's architecture as the seccomp tables name it, or None where they have none."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(machine)
    return arch if arch and sys.maxsize > 2**32 else None  # a 32-bit Python on a 64-bit kernel is another ABI


@functools.cache
def sandbox_problem() -> str | None:
    """Why python graders can't run confined on this machine, or None when they can. Cheap: no process started."""
    if sys.platform != "linux":
        return "python graders run only on Linux: their sandbox needs the kernel's Landlock and seccomp"
    if machine_arch() is None:
        bits = sys.maxsize.bit_length() + 1
        return f"python graders run only on 64-bit x86_64 and aarch64, not {platform.machine()} ({bits}-bit Python)"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.prctl(21, 0, 0, 0, 0) < 0:  # PR_GET_SECCOMP fails only where the kernel has no seccomp
        return "this kernel has no seccomp, which python graders need to run confined"
    if libc.syscall(444, None, 0, 1) < 1:  # landlock_create_ruleset(NULL, 0, VERSION): the ABI version
        return (
            "this kernel has no Landlock (Linux 5.13 or later, with landlock in the lsm= boot list), which python "
            "graders need to run confined"
        )
    return None


# --- checking a grader without running it ------------------------------------------------------------------------


def python_grader_paths(grader: Grader, where: str) -> list[str]:
    """The JSON path of every python grader in `grader`, a multi grader's included."""
    if isinstance(grader, PythonGrader):
        return [where]
    if isinstance(grader, MultiGrader):
        return [
            path for name, sub in grader.graders.items() for path in python_grader_paths(sub, f"{where}.graders.{name}")
        ]
    return []


def check_python_grader(source: str, *, where: str = "source") -> None:
    """Refuse a python grader's source that can't work: too big, not Python, or without `grade(sample, item)`.
    Compiles and reads the syntax tree only; nothing of the source runs."""
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise GraderError(f"{where}: {size:,} bytes of python, more than the {MAX_SOURCE_BYTES // 1024} kB allowed")
    try:
        tree = ast.parse(source, filename="<grader>")
        compile(tree, "<grader>", "exec")
    except SyntaxError as exc:
        raise GraderError(f"{where}: not valid Python: {exc.msg} (line {exc.lineno})") from None
    except ValueError as exc:  # a NUL byte
        raise GraderError(f"{where}: not valid Python: {exc}") from None
    except (RecursionError, MemoryError):  # "1+" * 100000: nested past what the parser or compiler can hold
        raise GraderError(f"{where}: not valid Python: nested too deeply to compile") from None
    definition = _top_level_grade(tree)
    if definition is None:
        raise GraderError(f"{where}: defines no function grade(sample, item) at the top level")
    if isinstance(definition, ast.AsyncFunctionDef):
        raise GraderError(f"{where}: grade must be a plain function, not async")
    if isinstance(definition, ast.FunctionDef) and not _takes_two_positional(definition.args):
        raise GraderError(f"{where}: grade must take exactly two arguments, grade(sample, item)")


def _top_level_grade(tree: ast.Module) -> ast.stmt | None:
    """The last top-level statement that binds `grade` (def, assignment or import), as Python would see it."""
    found: ast.stmt | None = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == "grade":
            found = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "grade" for t in targets):
                found = node
        elif isinstance(node, ast.Import | ast.ImportFrom) and any(
            (alias.asname or alias.name) == "grade" for alias in node.names
        ):
            found = node
    return found


def _takes_two_positional(args: ast.arguments) -> bool:
    positional = [*args.posonlyargs, *args.args]
    required = len(positional) - len(args.defaults)
    required_keywords = [d for d in args.kw_defaults if d is None]
    return required <= 2 and (len(positional) >= 2 or args.vararg is not None) and not required_keywords


# --- running one grader ------------------------------------------------------------------------------------------


def run_python_grader(
    source: str, sample: dict[str, Any], item: dict[str, Any], *, limits: SandboxLimits = SandboxLimits()
) -> float:
    """Call the grader's `grade(sample, item)` in the sandbox and return its score (any finite number, as the grader
    returned it). Raises PythonGraderError when the grader fails or hits a limit, SandboxUnavailableError when this
    machine can't confine it."""
    answer = _run(source, sample, item, limits)
    return float(answer["score"])


def sandbox_layers(limits: SandboxLimits = SandboxLimits()) -> list[str]:
    """The confinement layers in force on this machine, by running a trivial grader."""
    answer = _run("def grade(sample, item):\n    return 1.0\n", {}, {}, limits)
    return list(answer.get("layers", []))


def _run(source: str, sample: dict[str, Any], item: dict[str, Any], limits: SandboxLimits) -> dict[str, Any]:
    problem = sandbox_problem()
    if problem is not None:
        raise SandboxUnavailableError(problem)
    arch = machine_arch()
    assert arch is not None  # sandbox_problem checked it
    request = {
        "source": source,
        "sample": sample,
        "item": item,
        "limits": {"cpu_seconds": limits.cpu_seconds, "memory_mb": limits.memory_mb},
        "import_paths": _import_paths(),
        "read_paths": _read_paths(),
    }
    with tempfile.TemporaryDirectory(prefix="ftcli-grader-") as empty:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(CHILD_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=empty,
            env=_child_environment(empty),
            start_new_session=True,  # its own process group, killed whole at the wall-clock limit
        )
        request["seccomp"] = seccomp_program(arch, process.pid).hex()
        run = _supervise(process, json.dumps(request).encode(), limits)
    return _interpret(run, limits)


def _child_environment(home: str) -> dict[str, str]:
    """Nothing of the caller's environment (API keys live there) but what a library needs to start. HOME is the
    empty folder (nltk, for one, won't import without a home); one thread per BLAS library, two malloc arenas, so
    the address-space limit measures data rather than per-thread reservations."""
    env = {"HOME": home, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["MALLOC_ARENA_MAX"] = "2"
    if "LD_LIBRARY_PATH" in os.environ:  # some Python builds can't start without it
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return env


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


@functools.cache
def _import_paths() -> list[str]:
    """Where this Python imports from, less anything outside its installation (a project's source, the cwd)."""
    # a prefix of / (some containers) would let in every path: the site-packages rule still finds the packages
    roots = tuple({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)} - {os.sep})
    paths = []
    for entry in sys.path:
        if not entry or not os.path.exists(entry):
            continue
        real = os.path.realpath(entry)
        if _under(real, roots) or os.path.basename(real) in ("site-packages", "dist-packages"):
            paths.append(real)
    return list(dict.fromkeys(paths))


@functools.cache
def _read_paths() -> list[str]:
    """Everything the grader may read: its imports, the system's shared libraries and the loader's cache, and the
    system-wide nltk corpora (OpenAI's graders have punkt, stopwords, wordnet; a user's ~/nltk_data stays out)."""
    system = ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache"]
    system += ["/usr/share/nltk_data", "/usr/local/share/nltk_data", "/usr/local/lib/nltk_data"]
    library_path = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    stdlib = os.path.dirname(os.__file__)
    return list(dict.fromkeys([stdlib, *_import_paths(), *library_path, *system]))


@dataclass
class _Run:
    answer: bytes = b""
    stderr_tail: bytes = b""
    printed: int = 0
    stopped: Literal["wall_time", "output"] | None = None
    status: int = 0  # as os.waitstatus_to_exitcode: negative for a signal
    cpu_seconds: float = 0.0


def _supervise(process: subprocess.Popen[bytes], request: bytes, limits: SandboxLimits) -> _Run:
    """Feed the request, drain the answer and the prints under their caps, and reap the child by the deadline."""
    assert process.stdin and process.stdout and process.stderr
    run = _Run()
    deadline = time.monotonic() + limits.wall_seconds
    pending = memoryview(request)
    with selectors.DefaultSelector() as selector:
        os.set_blocking(process.stdin.fileno(), False)
        selector.register(process.stdin, selectors.EVENT_WRITE)
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        try:
            while selector.get_map() and run.stopped is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    run.stopped = "wall_time"
                    break
                for key, _ in selector.select(remaining):
                    if key.fileobj is process.stdin:
                        try:
                            pending = pending[os.write(process.stdin.fileno(), pending) :]
                        except BrokenPipeError:
                            pending = pending[:0]
                        if not pending:
                            selector.unregister(process.stdin)
                            process.stdin.close()
                        continue
                    assert isinstance(key.fileobj, type(process.stdout))
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif key.fileobj is process.stdout:
                        run.answer += chunk
                        if len(run.answer) > ANSWER_BYTES:
                            run.stopped = "output"
                    else:
                        run.printed += len(chunk)
                        run.stderr_tail = (run.stderr_tail + chunk)[-STDERR_TAIL_BYTES:]
                        if run.printed > limits.output_bytes:
                            run.stopped = "output"
            if run.stopped is None:  # both pipes closed: the child is exiting, or lingers until the deadline
                _reap(process, run, deadline)
        finally:
            if process.returncode is None:  # stopped, or the caller was interrupted: kill the group and reap it
                _kill_group(process)
                _reap(process, run, None)
            for stream in (process.stdin, process.stdout, process.stderr):
                if not stream.closed:
                    stream.close()
    return run


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # not yet reaped, so the group id can't belong to anyone else
        os.killpg(process.pid, signal.SIGKILL)


def _reap(process: subprocess.Popen[bytes], run: _Run, deadline: float | None) -> None:
    """Wait for the child (until `deadline`, if given) and record its status and CPU time."""
    while process.returncode is None:
        pid, status, usage = os.wait4(process.pid, 0 if deadline is None else os.WNOHANG)
        if pid:
            process.returncode = run.status = os.waitstatus_to_exitcode(status)
            run.cpu_seconds = usage.ru_utime + usage.ru_stime
            return
        if deadline is not None and time.monotonic() >= deadline:
            run.stopped = run.stopped or "wall_time"
            return
        time.sleep(0.005)


def _interpret(run: _Run, limits: SandboxLimits) -> dict[str, Any]:
    def failed(message: str, failure: PythonGraderFailure) -> PythonGraderError:
        return PythonGraderError(f"python grader {message}", failure=failure)

    if run.stopped == "wall_time":
        raise failed(f"ran past its {limits.wall_seconds:g} s wall-clock limit and was stopped", "wall_time")
    if run.stopped == "output":
        raise failed(f"printed more than {_size(limits.output_bytes)}, the sandbox's output limit", "output")
    signalled = -run.status if run.status < 0 else None
    if signalled == signal.SIGXCPU or (signalled == signal.SIGKILL and run.cpu_seconds >= limits.cpu_seconds):
        raise failed(f"used up its {limits.cpu_seconds} s of CPU time and was stopped", "cpu_time")
    if signalled == signal.SIGSYS:
        raise failed("made a system call the sandbox forbids and was killed", "forbidden")
    try:  # deep nesting ("[" * 100000) is not the child's answer
        answer = json.loads(run.answer) if run.status == 0 and run.answer else None
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        how = f"died of {signal.Signals(signalled).name}" if signalled else f"exited with code {run.status}"
        tail = run.stderr_tail.decode("utf-8", "replace").strip().splitlines()[-3:]
        detail = f": {' / '.join(tail)[-300:]}" if tail else ""
        if run.status == 0 and run.answer:
            how = "wrote an answer that is not the sandbox's"
        raise failed(f"{how} without a score{detail}", "crash")
    if "unavailable" in answer:
        raise SandboxUnavailableError(f"python graders can't run confined here: {answer['unavailable']}")
    if "error" in answer:
        kind = answer.get("kind")
        failure: PythonGraderFailure = kind if kind in ("invalid", "memory", "forbidden") else "runtime"
        prefix = {"runtime": "raised", "invalid": "is invalid:", "memory": "", "forbidden": ""}[failure]
        raise failed(f"{prefix} {answer['error']}".strip(), failure)
    score = answer.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise failed("wrote an answer that is not the sandbox's", "crash")
    return answer


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n:,} bytes"
