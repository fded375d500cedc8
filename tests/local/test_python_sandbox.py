"""The python grader sandbox: a correct grader scores, and each way out is refused or cut off with an error that
says why. Every escape test checks the outside world afterwards too (nothing connected, no file, the victim alive),
not only the error message."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftcli.data.graders import python_sandbox
from ftcli.data.graders.python_sandbox import (
    PythonGraderError,
    SandboxLimits,
    SandboxUnavailableError,
    check_python_grader,
    machine_arch,
    run_python_grader,
    sandbox_layers,
    sandbox_problem,
    syscall_numbers,
)
from ftcli.data.graders.spec import GraderError

# The escapes must fail for the sandbox's reasons, long before these limits (a busy machine stays far inside them)
QUICK = SandboxLimits(cpu_seconds=60, wall_seconds=120)


def grader(body: str) -> str:
    return textwrap.dedent(body).strip() + "\n"


def failure_of(source: str, item: dict[str, object] | None = None, limits: SandboxLimits = QUICK) -> PythonGraderError:
    with pytest.raises(PythonGraderError) as caught:
        run_python_grader(source, {"output_text": "x"}, item or {}, limits=limits)
    return caught.value


# --- a correct grader --------------------------------------------------------------------------------------------


def test_a_correct_grader_scores_the_sample_against_the_item() -> None:
    source = grader(
        """
        def grade(sample, item):
            return 1.0 if sample["output_text"].strip() == item["answer"] else 0.0
        """
    )
    assert run_python_grader(source, {"output_text": " 42 "}, {"answer": "42"}) == 1.0
    assert run_python_grader(source, {"output_text": "41"}, {"answer": "42"}) == 0.0


def test_a_grader_imports_the_libraries_openai_offers_and_uses_threads() -> None:
    source = grader(
        """
        import json, re, threading
        import numpy as np
        from rapidfuzz import fuzz

        def grade(sample, item):
            parts = []
            worker = threading.Thread(target=lambda: parts.append(float(np.mean([0.0, 1.0]))))
            worker.start()
            worker.join()
            return parts[0] * fuzz.ratio(sample["output_text"], item["reference"]) / 100
        """
    )
    assert run_python_grader(source, {"output_text": "abcd"}, {"reference": "abcd"}) == 0.5


def test_prints_do_not_disturb_the_answer_and_ints_count_as_scores() -> None:
    source = grader(
        """
        import sys
        def grade(sample, item):
            print('{"score": 0.9}')
            print("debugging", file=sys.stderr)
            return 1
        """
    )
    assert run_python_grader(source, {"output_text": ""}, {}) == 1.0


def test_a_score_outside_0_to_1_comes_back_as_the_grader_returned_it() -> None:
    assert run_python_grader("def grade(sample, item):\n    return -2.5\n", {}, {}) == -2.5


def test_none_of_the_callers_environment_reaches_the_grader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-not-for-graders")
    source = "import os\ndef grade(sample, item):\n    return float(len(os.environ.get('OPENAI_API_KEY', '')))\n"
    assert run_python_grader(source, {}, {}) == 0.0


def test_kernel_confinement_is_in_force_on_this_machine() -> None:
    assert sys.platform == "linux"  # CI and development machines are Linux: the sandbox must work there
    assert sandbox_problem() is None
    layers = sandbox_layers()
    assert {"seccomp", "landlock-fs", "rlimits"} <= set(layers)


# --- the grader's own failures -----------------------------------------------------------------------------------


def test_the_graders_exception_is_named_with_its_message_and_line() -> None:
    error = failure_of("def grade(sample, item):\n    x = 1\n    return x / 0\n")
    assert error.failure == "runtime"
    assert "ZeroDivisionError: division by zero" in str(error)
    assert "line 3" in str(error)
    assert isinstance(error, GraderError)


def test_a_long_exception_message_is_truncated() -> None:
    error = failure_of("def grade(sample, item):\n    raise ValueError('y' * 100_000)\n")
    assert error.failure == "runtime" and "ValueError: yyy" in str(error)
    assert len(str(error)) < 600


@pytest.mark.parametrize(
    ("returned", "why"),
    [
        ("'0.5'", "returned str, not a number"),
        ("None", "returned NoneType"),
        ("True", "returned a bool"),
        ("float('nan')", "nan, not a finite"),
    ],
)
def test_a_score_that_is_not_a_finite_number_is_refused(returned: str, why: str) -> None:
    error = failure_of(f"def grade(sample, item):\n    return {returned}\n")
    assert error.failure == "invalid" and why in str(error)


def test_a_source_without_grade_or_that_does_not_compile_is_refused() -> None:
    assert "defines no function grade" in str(failure_of("def score(sample, item):\n    return 1\n"))
    error = failure_of("def grade(sample, item)\n    return 1\n")
    assert error.failure == "invalid" and "does not compile" in str(error) and "line 1" in str(error)


def test_sys_exit_in_the_grader_is_its_failure_not_a_crash() -> None:
    error = failure_of("import sys\ndef grade(sample, item):\n    sys.exit(3)\n")
    assert error.failure == "runtime" and "SystemExit: 3" in str(error)


# --- the escapes -------------------------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


def assert_nothing_connected(server: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        server.accept()


def test_a_tcp_connection_to_localhost_is_refused(listener: socket.socket) -> None:
    source = grader(
        """
        import socket
        def grade(sample, item):
            socket.create_connection(("127.0.0.1", item["port"]), timeout=5).sendall(b"leak")
            return 1.0
        """
    )
    error = failure_of(source, {"port": listener.getsockname()[1]})
    assert error.failure == "forbidden" and "sandbox forbids" in str(error)
    assert_nothing_connected(listener)


def test_a_unix_socket_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    server.setblocking(False)
    try:
        source = "import socket\ndef grade(sample, item):\n    socket.socket(socket.AF_UNIX).connect(item['path'])\n"
        assert failure_of(source, {"path": str(path)}).failure == "forbidden"
        assert_nothing_connected(server)
    finally:
        server.close()


def test_writing_a_file_is_refused_anywhere(tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    source = grader(
        """
        def grade(sample, item):
            with open(item["path"], "w") as f:
                f.write("pwned")
            return 1.0
        """
    )
    error = failure_of(source, {"path": str(target)})
    assert error.failure == "forbidden" and "Permission denied" in str(error)
    assert not target.exists()
    relative = "def grade(sample, item):\n    open('here.txt', 'w').write('x')\n    return 1.0\n"
    assert failure_of(relative).failure == "forbidden"


def test_reading_a_file_outside_the_python_installation_is_refused(tmp_path: Path) -> None:
    secret = "correct-horse-battery-staple"
    path = tmp_path / "id_ed25519"
    path.write_text(secret)
    source = "def grade(sample, item):\n    raise ValueError(open(item['path']).read())\n"
    error = failure_of(source, {"path": str(path)})
    assert error.failure == "forbidden"
    assert secret not in str(error)
    listing = "import os\ndef grade(sample, item):\n    raise ValueError(os.listdir(item['home']))\n"
    assert failure_of(listing, {"home": str(Path.home())}).failure == "forbidden"
    passwd = "def grade(sample, item):\n    raise ValueError(open('/etc/passwd').read())\n"
    assert "root:" not in str(failure_of(passwd))


def test_chmod_which_landlock_does_not_cover_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "private"
    path.write_text("x")
    path.chmod(0o600)
    source = "import os\ndef grade(sample, item):\n    os.chmod(item['path'], 0o777)\n    return 1.0\n"
    assert failure_of(source, {"path": str(path)}).failure == "forbidden"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "body",
    [
        "os.fork()",
        "subprocess.run(['true'])",
        "os.posix_spawn('/bin/true', ['true'], {})",
        "os.execv('/bin/true', ['true'])",
    ],
)
def test_starting_a_process_or_a_program_is_refused(body: str) -> None:
    source = f"import os, subprocess\ndef grade(sample, item):\n    {body}\n    return 1.0\n"
    error = failure_of(source)
    assert error.failure == "forbidden" and "Operation not permitted" in str(error)


def test_signalling_another_process_is_refused() -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        source = "import os, signal\ndef grade(sample, item):\n    os.kill(item['pid'], signal.SIGKILL)\n"
        assert failure_of(source, {"pid": victim.pid}).failure == "forbidden"
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_sigio_cannot_be_aimed_at_another_process() -> None:
    victim = subprocess.Popen(["sleep", "60"])  # SIGIO's default action ends a process
    source = grader(
        """
        import fcntl, os
        def grade(sample, item):
            fcntl.fcntl(1, fcntl.F_SETOWN, item["pid"])
            fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_ASYNC)
            print("x" * 100_000, flush=True)  # the parent reads it, and the pipe signals its owner
            return 1.0
        """
    )
    try:
        assert failure_of(source, {"pid": victim.pid}).failure == "forbidden"
        time.sleep(0.2)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_an_endless_loop_is_stopped_at_the_cpu_limit() -> None:
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=120)
    error = failure_of("def grade(sample, item):\n    while True:\n        pass\n", limits=limits)
    assert error.failure == "cpu_time" and "1 s of CPU time" in str(error)


def test_an_endless_loop_that_ignores_sigxcpu_is_killed_anyway() -> None:
    source = grader(
        """
        import signal
        def grade(sample, item):
            signal.signal(signal.SIGXCPU, signal.SIG_IGN)
            while True:
                pass
        """
    )
    error = failure_of(source, limits=SandboxLimits(cpu_seconds=1, wall_seconds=120))
    assert error.failure == "cpu_time"


def sandbox_children() -> list[int]:
    """Our own sandboxed children still alive (or unreaped)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and b"_sandbox_child.py" in command:
            found.append(int(entry.name))
    return found


def test_a_grader_that_sleeps_is_stopped_at_the_wall_clock_limit() -> None:
    source = "import time\ndef grade(sample, item):\n    time.sleep(3600)\n"
    error = failure_of(source, limits=SandboxLimits(cpu_seconds=60, wall_seconds=2))
    assert error.failure == "wall_time" and "2 s wall-clock limit" in str(error)
    assert sandbox_children() == []


def test_a_1_gb_string_runs_into_the_memory_limit() -> None:
    error = failure_of(
        "def grade(sample, item):\n    s = 'x' * 1_000_000_000\n    return 1.0\n", limits=SandboxLimits()
    )
    assert error.failure == "memory" and "512 MiB memory limit" in str(error)


def test_a_thread_bomb_runs_into_the_memory_limit_and_leaves_nothing_behind() -> None:
    """Threads are allowed (graders use them), and their number has no limit of its own where the machine runs the
    sandbox as root (the kernel exempts root from RLIMIT_NPROC): each thread's stack counts against the address
    space, so even at Python's smallest stack the bomb stops within the memory limit — the grader sees it fail, or
    Python's own thread start-up runs out of memory and the grader is stopped at its limits — and nothing is left."""
    source = grader(
        """
        import threading, time
        threading.stack_size(32768)

        def grade(sample, item):
            started = 0
            try:
                while started < 1_000_000:
                    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
                    started += 1
            except (RuntimeError, MemoryError):  # can't start new thread: no address space left
                return started / 1_000_000
            return 1.0
        """
    )
    try:
        started = run_python_grader(source, {"output_text": "x"}, {}, limits=SandboxLimits(wall_seconds=20))
    except PythonGraderError as stopped:
        assert stopped.failure in ("memory", "wall_time", "cpu_time"), stopped
    else:
        # 512 MiB / (32 KiB of stack + a guard page) is about 15,000; a limit that didn't hold would reach 1,000,000
        assert 0 < started * 1_000_000 < 20_000, started
    assert sandbox_children() == []


def test_printing_100_mb_is_cut_off_at_the_output_limit() -> None:
    source = grader(
        """
        def grade(sample, item):
            for _ in range(100):
                print("x" * 1_000_000)
            return 1.0
        """
    )
    started = time.monotonic()
    error = failure_of(source, limits=SandboxLimits(cpu_seconds=120, wall_seconds=120))
    assert error.failure == "output" and "printed more than 1 MiB" in str(error)
    assert time.monotonic() - started < 60  # cut off when it passes the cap, not left to the wall-clock limit
    assert sandbox_children() == []


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("socket", (2, 1, 0)),  # AF_INET, SOCK_STREAM
        ("io_uring_setup", (8, 0)),  # io_uring would do I/O the filter never sees
        ("unshare", (0x10000000,)),  # a new user namespace, with every capability inside it
        ("clone", (17, 0, 0, 0, 0)),  # fork by hand: clone(SIGCHLD)
        ("ptrace", (16, 1, 0, 0)),  # PTRACE_ATTACH to init
        ("setrlimit", (0, 0)),  # reaching for its own limits
        ("keyctl", (0, -4, 0)),  # the user's keyring
    ],
)
def test_raw_syscalls_through_ctypes_are_refused(name: str, args: tuple[int, ...]) -> None:
    arch = machine_arch()
    assert arch is not None
    source = grader(
        f"""
        import ctypes
        def grade(sample, item):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syscall({syscall_numbers(arch)[name]}, *{args!r}) >= 0:
                return 1000.0
            return float(ctypes.get_errno())
        """
    )
    assert run_python_grader(source, {}, {}, limits=QUICK) == 1.0  # EPERM


@pytest.mark.skipif(machine_arch() != "x86_64", reason="x86_64 only: the 32-bit and x32 syscall ABIs are x86's")
@pytest.mark.parametrize(
    "call",
    [
        # push rbx; socket(AF_INET, SOCK_STREAM, 0) through the i386 ABI (int 0x80, syscall 359); pop rbx; ret
        "run_code('53' 'bb02000000' 'b901000000' '31d2' 'b867010000' 'cd80' '5b' 'c3')",
        "libc.syscall(0x40000000 | 41, 2, 1, 0)",  # socket through the x32 ABI
    ],
)
def test_other_syscall_abis_kill_the_grader(call: str, listener: socket.socket) -> None:
    source = grader(
        f"""
        import ctypes, mmap
        libc = ctypes.CDLL(None, use_errno=True)

        def run_code(hex_code):
            page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            page.write(bytes.fromhex(hex_code))
            return ctypes.CFUNCTYPE(ctypes.c_long)(ctypes.addressof(ctypes.c_char.from_buffer(page)))()

        def grade(sample, item):
            return float({call})
        """
    )
    error = failure_of(source)
    assert error.failure == "forbidden" and "system call the sandbox forbids" in str(error)


# --- refusing to run unconfined ----------------------------------------------------------------------------------


def test_a_machine_without_confinement_refuses_python_graders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert "only on Linux" in (sandbox_problem.__wrapped__() or "")
    monkeypatch.setattr(python_sandbox, "sandbox_problem", lambda: "this kernel has no Landlock")
    with pytest.raises(SandboxUnavailableError, match="no Landlock"):
        run_python_grader("def grade(sample, item):\n    return 1.0\n", {}, {})


def test_a_filter_the_kernel_refuses_means_the_grader_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(python_sandbox, "seccomp_program", lambda arch, pid: b"\x00" * 8)  # an invalid program
    with pytest.raises(SandboxUnavailableError, match="seccomp"):
        run_python_grader("def grade(sample, item):\n    return 1.0\n", {}, {})


# --- checking a grader without running it ------------------------------------------------------------------------


def test_check_accepts_a_grader_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    check_python_grader(f"open({str(marker)!r}, 'w')\ndef grade(sample, item):\n    return 1.0\n")
    assert not marker.exists()
    check_python_grader("grade = lambda sample, item: 1.0\n")
    check_python_grader("def grade(sample, item, scale=1.0):\n    return scale\n")


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("def grade(sample, item)\n    return 1\n", "not valid Python: expected ':' (line 1)"),
        ("def score(sample, item):\n    return 1\n", "defines no function grade"),
        ("def helper():\n    def grade(sample, item):\n        return 1\n", "defines no function grade"),
        ("async def grade(sample, item):\n    return 1\n", "not async"),
        ("def grade(sample):\n    return 1\n", "exactly two arguments"),
        ("def grade(sample, item, extra):\n    return 1\n", "exactly two arguments"),
        ("x = 1\n" * 50_000 + "def grade(sample, item):\n    return 1\n", "more than the 256 kB allowed"),
    ],
)
def test_check_refuses_a_grader_that_cannot_work(source: str, why: str) -> None:
    with pytest.raises(GraderError, match=r"^source: ") as caught:
        check_python_grader(source)
    assert why in str(caught.value)


def test_the_syscall_tables_name_every_denied_call_each_arch_has() -> None:
    # aarch64 never had these (it has only the *at forms, and no x86 I/O ports or LDT)
    not_on_aarch64 = {"fork", "vfork", "chmod", "chown", "lchown", "mknod", "utime", "utimes", "futimesat"}
    not_on_aarch64 |= {"inotify_init", "uselib", "ustat", "sysfs", "_sysctl", "modify_ldt", "iopl", "ioperm"}
    for arch, absent in (("x86_64", set()), ("aarch64", not_on_aarch64)):
        numbers = syscall_numbers(arch)
        assert set(python_sandbox.DENIED_SYSCALLS) - set(numbers) == absent
        assert {"clone", "clone3", "kill", "tgkill"} <= set(numbers)
        assert len(set(numbers.values())) == len(numbers)  # no number given to two names
        assert max(numbers.values()) <= python_sandbox.LAST_KNOWN_SYSCALL


@pytest.mark.parametrize("source", ["1+" * 100_000 + "1\n", "(" * 100_000 + ")" * 100_000 + "\n", "-" * 200_000 + "1"])
def test_check_refuses_source_nested_past_what_python_compiles(source: str) -> None:
    """RecursionError (or MemoryError) of the parser or the compiler is a GraderError (a 400), not a server error."""
    with pytest.raises(GraderError, match="not valid Python"):
        check_python_grader(source + "def grade(sample, item):\n    return 1.0\n")


@pytest.mark.parametrize(
    "answer", [b'{"score": NaN}', b'{"score": Infinity}', b'{"score": -Infinity}', b"[" * 100_000, b'{"score": 1e999}']
)
def test_a_child_answer_that_is_not_a_finite_score_is_refused(answer: bytes) -> None:
    """The child writes finite floats only: anything else came from the grader's own code, forging the answer."""
    run = python_sandbox._Run(answer=answer)
    with pytest.raises(PythonGraderError, match="not the sandbox's") as caught:
        python_sandbox._interpret(run, QUICK)
    assert caught.value.failure == "crash"
