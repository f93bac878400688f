"""Keep TensorFlow's native start-up log lines out of a command's output.

Importing TensorFlow and running its first operation print lines such as

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796005501.669117   14937 port.cc:153] oneDNN custom operations are on. ...
    E0000 00:00:1796005505.527466   14937 cuda_platform.cc:52] failed call to cuInit: ...

from C++ straight to the process's stderr, before TensorFlow reads `TF_CPP_MIN_LOG_LEVEL`
(TensorFlow 2.21 prints them at any level). Inside `quiet_native_logs()`, file descriptor 2
is a pipe to a small filter process that passes every line on to the real stderr except
those: the banner, info / warning / error lines in absl's format, and the second line of
TensorFlow's CPU-instructions notice. Fatal lines (`F...`) and everything else, Python's
warnings and tracebacks included, pass through as they come. The filter is a separate
process, so even if TensorFlow aborts the process, what it printed last still arrives.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator

__all__ = ["is_native_log_line", "quiet_native_logs", "quiet_native_logs_until_exit"]

_NATIVE_LINE = re.compile(
    r"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    r"STDERR"
    r"|[IWE]\d{4} [\d:.]+\s+\d+ [\w.+/-]+:\d+\] .*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate "
    r"compiler flags\.)$"
)

# A native record's continuation lines (TensorFlow adds "\t [[{{node ...}}]]") start
# with white space; they go with the record.
_FILTER = f"""
import re, sys
native = re.compile({_NATIVE_LINE.pattern!r})
dropping = False
for line in sys.stdin.buffer:
    text = line.decode("utf-8", "replace").rstrip("\\r\\n")
    if native.match(text) or (dropping and text[:1] in (" ", "\\t")):
        dropping = True
        continue
    dropping = False
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
"""


def is_native_log_line(line: str) -> bool:
    """Whether `line` is a TensorFlow start-up line that `quiet_native_logs` holds back.

    Args:
        line: One line of output, without its newline.

    Returns:
        True for the absl banner, an info / warning / error line in absl's format
        (`I0000 00:00:1796005501.669117   14937 port.cc:153] ...`) or the second line of
        TensorFlow's CPU-instructions notice; False for anything else (fatal lines too).
    """
    return bool(_NATIVE_LINE.match(line))


def _start_filter() -> Callable[[bool], None] | None:
    """Points file descriptor 2 at the filter; returns the function that ends it.

    `stop(silence)` waits until the filter has passed on everything, then points file
    descriptor 2 back at the real stderr, or at the null device if `silence`.
    """
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0" or stderr_fd != 2:
        return None
    sys.stderr.flush()
    saved = os.dup(2)
    process = subprocess.Popen([sys.executable, "-c", _FILTER], stdin=subprocess.PIPE, stdout=saved)
    assert process.stdin is not None
    pipe = process.stdin
    os.dup2(pipe.fileno(), 2)

    def stop(silence: bool) -> None:
        sys.stderr.flush()
        if silence:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        else:
            os.dup2(saved, 2)
        os.close(saved)
        pipe.close()
        process.wait()

    return stop


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Filters TensorFlow's native start-up lines out of stderr inside the block.

    Does nothing if `TF_CPP_MIN_LOG_LEVEL` is "0" (the user asked for TensorFlow's logs)
    or if stderr is not a file descriptor.

    Yields:
        Nothing.
    """
    stop = _start_filter()
    try:
        yield
    finally:
        if stop is not None:
            stop(False)


def quiet_native_logs_until_exit() -> None:
    """Filters TensorFlow's native log lines out of stderr for the rest of the process.

    For a command line program that uses TensorFlow until it exits (TensorFlow also logs
    on errors and while it shuts down). At exit (`atexit`), once the filter has passed
    everything on, stderr is pointed at the null device: what comes after, TensorFlow's
    shutdown lines, is not shown. Does nothing under the conditions of
    `quiet_native_logs`.
    """
    stop = _start_filter()
    if stop is not None:
        atexit.register(stop, True)
