"""Children that do not outlive the lab process that started them.

A bench or test killed with -9 runs no `finally`: its servers and station processes would keep
ports, sockets and a PostgreSQL cluster alive. Linux's parent-death signal (prctl
PR_SET_PDEATHSIG) has the kernel signal such a child when its parent dies; a child sets it on
itself, or the parent sets it in the child between fork and exec (`preexec`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when its parent thread exits."""


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent dies (and now, if the parent
    is already gone). Linux only; elsewhere nothing happens."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return
    if os.getppid() == 1:  # the parent died before the call: the kernel will not tell us
        os.kill(os.getpid(), sig)


def preexec(
    sig: signal.Signals = signal.SIGKILL, uid: int | None = None, gid: int | None = None
) -> Callable[[], None]:
    """A `preexec_fn` for subprocess: switch to `gid`/`uid` if given (a credential change
    clears the parent-death signal, so it comes first), then `die_with_parent(sig)`."""

    def child() -> None:
        if gid is not None:
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        die_with_parent(sig)

    return child
