"""The child side of the python grader sandbox: run as a script by `python -I -S` (stdlib only, never imported by
ftcli), it confines itself and then runs one grader.

Order matters: everything that needs the outside world (reading the request, ctypes, the policy) happens first;
then resource limits, an optional user+network namespace, Landlock (the filesystem becomes read-only and only the
Python installation and system libraries are visible; TCP and signals to other processes are denied where the
kernel supports it) and last the seccomp filter the parent built (no sockets, processes, exec, chmod, namespaces,
…). Only then is the grader's source compiled and run. Landlock and seccomp are required: if either can't be
installed, the child answers "unavailable" and runs nothing. Every step is irreversible for this process.

Protocol: one JSON request on stdin; one JSON answer on the stdout the parent gave (fd 1 is then pointed at stderr,
so whatever the grader prints goes to the capped stderr pipe, not into the answer):
  {"score": float} | {"error": str, "kind": "grader" | "invalid" | "memory" | "forbidden"} | {"unavailable": str}
"""

import builtins
import ctypes
import errno
import json
import math
import numbers
import os
import resource
import sys
import traceback
from typing import Any

GRADER_FILENAME = "<grader>"
MESSAGE_CHARS = 400

# Landlock (linux/landlock.h)
SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
ACCESS_FS_READ_FILE = 1 << 2
ACCESS_FS_READ_DIR = 1 << 3
# every filesystem right each ABI version knows: handled and not granted means denied
HANDLED_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
HANDLED_FS_LATEST = (1 << 16) - 1  # ABI 5 added ioctl on devices
ACCESS_NET_BIND_TCP = 1 << 0  # ABI 4
ACCESS_NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


class Unavailable(Exception):
    """The kernel refused a confinement this sandbox requires."""


class RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is __attribute__((packed))
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def fail(what: str) -> Unavailable:
    err = ctypes.get_errno()
    return Unavailable(f"{what}: {os.strerror(err)}" if err else what)


def set_limits(limits: dict[str, Any]) -> None:
    def cap(which: int, soft: int, hard: int) -> None:
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:  # never ask for more than this process may have
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(which, (soft, hard))

    cpu = int(limits["cpu_seconds"])
    cap(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU at the limit, SIGKILL a second later if it is ignored
    memory = int(limits["memory_mb"]) << 20
    cap(resource.RLIMIT_AS, memory, memory)
    cap(resource.RLIMIT_FSIZE, 0, 0)
    cap(resource.RLIMIT_CORE, 0, 0)
    cap(resource.RLIMIT_NOFILE, 64, 64)
    cap(resource.RLIMIT_MEMLOCK, 0, 0)
    cap(resource.RLIMIT_MSGQUEUE, 0, 0)


def try_network_namespace() -> bool:
    """A new user+network namespace: no interface but a down loopback. An extra layer where the kernel lets an
    unprivileged process have one (seccomp already refuses every socket), so failure is not an error."""
    return bool(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0)


def landlock(read_paths: list[str]) -> list[str]:
    abi = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    if abi < 1:
        raise fail("Landlock is not enabled in this kernel")
    layers = ["landlock-fs"]
    attr = RulesetAttr(HANDLED_FS_BY_ABI.get(abi, HANDLED_FS_LATEST), 0, 0)
    size = 8
    if abi >= 4:
        attr.handled_access_net = ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP
        size = 16
        layers.append("landlock-net")
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
        layers.append("landlock-scope")
    ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        raise fail("Landlock refused the ruleset")
    for path in read_paths:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # a path that isn't there needs no rule
        try:
            is_dir = os.path.isdir(path)
            access = ACCESS_FS_READ_FILE | (ACCESS_FS_READ_DIR if is_dir else 0)
            rule = PathBeneathAttr(access, fd)
            if libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0) < 0:
                raise fail(f"Landlock refused a read rule for {path}")
        finally:
            os.close(fd)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise fail("prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) < 0:
        raise fail("Landlock could not restrict this process")
    os.close(ruleset)
    return layers


def seccomp(program: bytes) -> None:
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise fail("the kernel refused the seccomp filter")


def confine(request: dict[str, Any]) -> list[str]:
    """Apply every layer; return the names of those in force. Raises Unavailable if a required one fails."""
    set_limits(request["limits"])
    layers: list[str] = ["rlimits"]
    if try_network_namespace():
        layers.append("netns")
    layers += landlock(request["read_paths"])
    seccomp(bytes.fromhex(request["seccomp"]))
    layers.append("seccomp")
    return layers


def describe(exc: BaseException) -> str:
    said = exc.msg if isinstance(exc, SyntaxError) else str(exc)  # str() of a SyntaxError repeats the line
    text = f"{type(exc).__name__}: {said}" if said else type(exc).__name__
    if len(text) > MESSAGE_CHARS:
        text = text[: MESSAGE_CHARS - 1] + "…"
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == GRADER_FILENAME]
    if isinstance(exc, SyntaxError) and exc.filename == GRADER_FILENAME:
        lines.append(exc.lineno)
    return f"{text} (line {lines[-1]} of the grader)" if lines and lines[-1] else text


def run_grader(request: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    try:
        code = compile(request["source"], GRADER_FILENAME, "exec")
    except (SyntaxError, ValueError) as exc:
        return {"error": f"the source does not compile: {describe(exc)}", "kind": "invalid"}
    namespace: dict[str, Any] = {"__name__": "grader", "__builtins__": builtins}
    try:
        exec(code, namespace)
        grade = namespace.get("grade")
        if not callable(grade):
            return {"error": "the source defines no function grade(sample, item)", "kind": "invalid"}
        score = grade(request["sample"], request["item"])
    except MemoryError:
        return {"error": f"ran out of its {limits['memory_mb']} MiB memory limit (MemoryError)", "kind": "memory"}
    except PermissionError as exc:
        return {"error": f"tried something the sandbox forbids: {describe(exc)}", "kind": "forbidden"}
    except BaseException as exc:  # the grader's own failure, SystemExit included, is its answer
        return {"error": describe(exc), "kind": "grader"}
    if isinstance(score, bool):  # OpenAI's contract is a float: True is a verdict, not a score
        return {"error": "grade() returned a bool, not a number: return float(...)", "kind": "invalid"}
    if not isinstance(score, numbers.Real):  # int, float, numpy's scalars
        return {"error": f"grade() returned {type(score).__name__}, not a number", "kind": "invalid"}
    value = float(score)
    if not math.isfinite(value):
        return {"error": f"grade() returned {value}, not a finite number", "kind": "invalid"}
    return {"score": value}


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    answer_fd = os.dup(1)
    os.dup2(2, 1)  # the grader's prints join stderr, which the parent caps and mostly discards
    sys.path.extend(request["import_paths"])
    answer: dict[str, Any]
    try:
        layers = confine(request)
    except (Unavailable, OSError, ValueError) as exc:
        answer = {"unavailable": str(exc)}
    else:
        answer = run_grader(request, request["limits"])
        answer["layers"] = layers
    data = json.dumps(answer).encode()
    while data:
        data = data[os.write(answer_fd, data) :]
    os._exit(0)  # no atexit handlers, no waiting for the grader's threads


if __name__ == "__main__":
    try:
        main()
    except MemoryError:
        os._exit(3)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            os._exit(4)
        raise
