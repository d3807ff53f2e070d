"""The frameworks' own chatter goes to a log file; the terminal keeps ours: progress, results and errors.

TensorFlow, absl, XNNPACK and the TFLite converter write from C++ straight to file descriptors 1 and 2; torch,
torchao and absl log through Python loggers; many libraries raise Python warnings. None of it is ours, and on a
first run it buried the progress bars. Inside `framework_output_to`, descriptors 1 and 2 point at the log, so do
`sys.stderr`, Python warnings and the root logger; `sys.stdout` (where our consoles and progress bars write) and the
`crossdeploy` logger keep the terminal. Child processes inherit the log as their descriptors; a crossdeploy child
appends to the same file (its path travels in LOG_ENV).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOG_ENV = "CROSSDEPLOY_FRAMEWORK_LOG"
_last_log: Path | None = None
# While redirected: the streams that reach the terminal (a logging config can name them as
# "ext://crossdeploy.framework_log.terminal_stderr").
terminal_stdout = None
terminal_stderr = None


def child_streams() -> dict[str, object]:
    """`stdout=`/`stderr=` for a crossdeploy child process: the terminal, since the child sends its own
    frameworks' output to the log (an empty dict, i.e. inherit, outside `framework_output_to`)."""
    out = {}
    for name, stream in (("stdout", terminal_stdout), ("stderr", terminal_stderr)):
        if stream is None:
            continue
        try:
            stream.fileno()
            out[name] = stream
        except (AttributeError, ValueError, io.UnsupportedOperation):
            pass
    return out


def last_log() -> Path | None:
    """The log of the most recent `framework_output_to` in this process, if it holds anything."""
    if _last_log is not None and _last_log.is_file() and _last_log.stat().st_size > 0:
        return _last_log
    return None


def _terminal_stream(stream, fd: int, saved_fd: int):
    """`stream` if it does not write to `fd` (pytest's capture, a redirect in Python); otherwise a stream on the
    saved copy of the terminal's descriptor, so it keeps reaching the terminal once `fd` points at the log."""
    try:
        if stream.fileno() != fd:
            return stream
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return stream
    return open(saved_fd, "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8",
                errors="replace", closefd=False)


@contextmanager
def framework_output_to(path: Path) -> Iterator[Path]:
    """Send the frameworks' output to `path` (truncated, unless an enclosing crossdeploy process already writes
    there) for the duration."""
    global _last_log, terminal_stdout, terminal_stderr
    inherited = os.environ.get(LOG_ENV)
    path = Path(inherited) if inherited else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    # O_APPEND: this process, its children and their own opens all write at the end, never over each other.
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if inherited else os.O_TRUNC)
    log_fd = os.open(path, flags, 0o644)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    # Never closed: framework loggers created in here hold this stream and keep logging to the file afterwards.
    log_stream = open(log_fd, "w", buffering=1, encoding="utf-8", errors="replace")
    previous = {"stdout": sys.stdout, "stderr": sys.stderr, "showwarning": warnings.showwarning,
                "root_level": logging.root.level, "env": inherited}
    terminal_out = _terminal_stream(sys.stdout, 1, saved[1])
    terminal_err = _terminal_stream(sys.stderr, 2, saved[2])
    root_handler = logging.StreamHandler(log_stream)
    root_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    ours = logging.getLogger("crossdeploy")
    ours_handler = logging.StreamHandler(terminal_err)
    ours_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    try:
        for fd in (1, 2):
            os.dup2(log_fd, fd)
        sys.stdout = terminal_out
        sys.stderr = log_stream
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log_stream.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        logging.root.addHandler(root_handler)
        logging.root.setLevel(logging.INFO)
        ours.addHandler(ours_handler)
        ours.propagate = False
        os.environ[LOG_ENV] = str(path)
        _last_log = path
        terminal_stdout, terminal_stderr = terminal_out, terminal_err
        yield path
    finally:
        terminal_stdout = terminal_stderr = None
        for stream in (sys.stdout, sys.stderr, terminal_out, terminal_err, log_stream):
            stream.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
        sys.stdout, sys.stderr = previous["stdout"], previous["stderr"]
        warnings.showwarning = previous["showwarning"]
        logging.root.removeHandler(root_handler)
        logging.root.setLevel(previous["root_level"])
        ours.removeHandler(ours_handler)
        ours.propagate = True
        if previous["env"] is None:
            os.environ.pop(LOG_ENV, None)
        # A copy a terminal stream still writes to stays open: closed, its number could be reused by another file.
        for fd, copy in saved.items():
            if (terminal_out, terminal_err)[fd - 1] is previous[("stdout", "stderr")[fd - 1]]:
                os.close(copy)
