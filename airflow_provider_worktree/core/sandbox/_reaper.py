"""The fallback box's first process: resource limits, then the command, then nothing it started survives.

Run as ``python -I -S _reaper.py LIMITS_JSON -- ARGV...`` by :mod:`airflow_provider_worktree.core.sandbox.box` when
bubblewrap is not available. Standard library only and no package import, so it starts in milliseconds.

* Applies the resource limits (``resource.setrlimit``) given as JSON ``{"RLIMIT_NPROC": n, ...}``.
* Marks itself a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): a descendant whose parent dies is re-parented
  here instead of to PID 1, so a ``setsid`` daemon or a double fork stays findable.
* Runs the command as its child, waits for it, then kills every descendant that is left (SIGKILL, repeated until
  none is found) and exits with the command's status (a signal death is re-raised on itself).
* On SIGTERM (a timeout or a cancel of the process group) it does the same cleanup at once.

It cannot stop what the worker's own user may do (read that user's files, signal its processes); bubblewrap can.
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _procfs import proc_stats  # noqa: E402 - the one /proc parser, imported by path (no package import)

del sys.path[0]  # nothing else may come from the package directory


def _descendants(root):
    children = {}
    for pid, _state, ppid, _pgrp in proc_stats():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            found.append(pid)
            todo.append(pid)
    return found


def _kill_all():
    me = os.getpid()
    for _ in range(200):
        pids = _descendants(me)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:  # reap what died (our children, and orphans re-parented to us)
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break


def _on_term(signum, frame):
    _kill_all()
    os._exit(128 + signum)


def main(args):
    limits, argv = json.loads(args[0]), args[2:]
    import resource

    for name, value in limits.items():
        which = getattr(resource, name)
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGTERM, _on_term)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            sys.stderr.write(f"box: cannot run {argv[0]!r}: {exc.strerror}\n")
            os._exit(127)
    while True:
        try:
            waited, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        if waited == pid:
            break
    _kill_all()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP: cannot be caught, already the default
            pass
        os.kill(os.getpid(), sig)
        return 128 + sig
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
