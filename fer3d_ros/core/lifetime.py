"""Processes that end with their parent: a node orphaned by its launch, face_node's descriptor worker."""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `signum` to this process the moment its parent ends (Linux prctl), and
    send it now if the parent has already gone. False where the system has no such call."""
    if not sys.platform.startswith('linux'):
        return False
    parent = os.getppid()
    try:
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum)) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent or parent == 1:  # the parent ended before the request took effect
        os.kill(os.getpid(), signum)
    return True
