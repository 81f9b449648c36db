"""What a node's long-lived process asks of the system: to end with its parent (a node orphaned by its
launch, face_node's descriptor worker), and to give the memory of a huge frame back."""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h
M_MMAP_THRESHOLD = -3  # malloc.h
# Buffers above this are mapped on their own and unmapped when freed: a 1920x1080 bgr8 frame (6.2 MB)
# stays in the heap, a 12-megapixel one (36 MB) and the copies made of it go back to the system.
LARGE_BUFFER = 8 * 2**20


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


def return_large_buffers(threshold: int = LARGE_BUFFER) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes. By default glibc raises it to the largest
    buffer freed so far (up to 32 MiB), after which a huge frame's buffers come from the heap and stay
    there: in the soak each 4000x3000 image left ~34 MB more in face_node. False where there is no glibc."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        return ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1
    except (OSError, AttributeError):
        return False
