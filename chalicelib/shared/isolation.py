"""Run one function in a forked child process, with a memory and a time limit.

Native image decoders (libheif, libjpeg, libpng, libwebp) parse bytes that any signed-in user
chooses. A bad file can crash one (SIGSEGV inside libheif: ``../shared/fuzz``), spin, or
allocate without bound; in a child that kills only the child, and the caller gets a
``ChildFailed`` it can turn into a clear 4xx. ``fork`` (not ``spawn``) keeps the cost to a few
milliseconds: the child starts with the parent's modules already imported. The answer travels
through an anonymous memory file (a pipe would cost ~100 ms per decoded photo in context
switches); a pidfd tells the parent that the child has gone.

Both are optional in CPython's ``os``: ``memfd_create`` needs glibc ≥ 2.27 (Amazon Linux 2, the
python3.11 Lambda runtime's, has 2.26) and ``pidfd_open`` a build against Linux ≥ 5.3 headers.
Without them the answer goes through an unlinked temporary file and the parent polls the child.
"""

from __future__ import annotations

import faulthandler
import mmap
import os
import pickle
import resource
import select
import signal
import tempfile
import time
from collections.abc import Callable
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")


class ChildFailed(Exception):
    """The child died (``signal`` says by which), ran out of time, or sent nothing readable."""

    def __init__(self, reason: str, kind: str, signal_number: int | None = None):
        super().__init__(reason)
        self.reason, self.kind, self.signal_number = reason, kind, signal_number


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * _PAGE


def _child(fn: Callable, args: tuple, answer_fd: int, memory_bytes: int) -> None:
    """Runs in the child: never returns, never raises."""
    try:
        faulthandler.disable()  # a crash here is expected and reported by the parent, not dumped
        limit = _address_space() + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            result = (True, fn(*args))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            result = (False, exc)
        try:
            _write_answer(answer_fd, result)
        except Exception as exc:  # an answer that cannot be pickled: send its text
            _write_answer(answer_fd, (False, RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        os._exit(0)


def _write_answer(fd: int, answer: tuple) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    with os.fdopen(fd, "wb", closefd=False) as out:  # large buffers go straight to the file
        pickle.dump(answer, out, protocol=pickle.HIGHEST_PROTOCOL)


def run_isolated(fn: Callable[..., Any], *args: Any, timeout: float = 20.0, memory_bytes: int = 2 * 1024**3) -> Any:
    """``fn(*args)`` computed in a child process; its exception is re-raised here.

    ``memory_bytes`` is how much address space the child may add to what it inherits.
    Raises ``ChildFailed`` when the child is killed (by a signal or the timeout).
    """
    answer_fd = _anonymous_file()
    try:
        return _run(fn, args, answer_fd, timeout, memory_bytes)
    finally:
        os.close(answer_fd)


def _wait(pid: int, timeout: float) -> tuple[int, bool]:
    """The child's exit status, reaped, and whether it had to be killed for taking too long."""
    try:
        process = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    except OSError:  # a kernel without the call (ENOSYS)
        process = None
    timed_out = False
    if process is not None:
        # A pidfd becomes readable when the child exits. (A pipe's EOF would not do: another
        # thread's child forked in between inherits the pipe's write end and holds it open.)
        try:
            if not select.select([process], [], [], timeout)[0]:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
        finally:
            os.close(process)
        return os.waitpid(pid, 0)[1], timed_out
    give_up, pause = time.monotonic() + timeout, 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, timed_out
        if not timed_out and time.monotonic() >= give_up:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def _anonymous_file() -> int:
    """A file with no name that parent and child share: memory where the C library can make one."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("isolated-answer", os.MFD_CLOEXEC)
    fd, path = tempfile.mkstemp(prefix="isolated-answer-")
    os.unlink(path)
    return fd


def _run(fn: Callable, args: tuple, answer_fd: int, timeout: float, memory_bytes: int) -> Any:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's own code path ends in os._exit
        _child(fn, args, answer_fd, memory_bytes)
    status, timed_out = _wait(pid, timeout)
    if timed_out:
        raise ChildFailed(f"gave up after {timeout:g} s", "timeout")
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        raise ChildFailed(f"killed by {signal.Signals(number).name}", "crashed", number)
    try:
        size = os.fstat(answer_fd).st_size
        with mmap.mmap(answer_fd, size, prot=mmap.PROT_READ) as answer:
            ok, value = pickle.loads(answer)
    except Exception as exc:  # a child that exited without a whole answer
        raise ChildFailed(f"no readable answer ({type(exc).__name__})", "no_answer") from exc
    if not ok:
        raise value
    return value
