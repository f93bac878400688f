"""kerasgen.native_stderr: TensorFlow's start-up lines filtered out of stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from kerasgen.native_stderr import is_native_log_line

# Lines TensorFlow 2.21 printed when `kerasgen preview` imported it.
NATIVE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796005501.669117   14937 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796005501.669644   14937 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
    "I0000 00:00:1796005501.945404   14937 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796005505.527466   14937 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "W0000 00:00:1796005505.527466   14937 some_file.cc:7] a warning",
]
KEPT = [
    "kerasgen: warning: 2 class folder(s) contain no file",
    "kerasgen: error: --batch must be in [0, 3). Received: 9",
    "Traceback (most recent call last):",
    "F0000 00:00:1796005505.527466   14937 port.cc:1] Check failed: fatal lines stay",
    "WARNING:tensorflow:5 out of the last 13 calls triggered tf.function retracing.",
    "I0000 is not a log line without the rest",
]


@pytest.mark.parametrize("line", NATIVE)
def test_start_up_lines_are_recognised(line):
    assert is_native_log_line(line)


@pytest.mark.parametrize("line", KEPT)
def test_other_lines_are_not(line):
    assert not is_native_log_line(line)


def run(script, **env):
    code = textwrap.dedent(script)
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=environment)


SCRIPT = """
    import os, sys, warnings
    from kerasgen.native_stderr import quiet_native_logs
    lines = {lines!r}
    with quiet_native_logs():
        for line in lines:
            os.write(2, (line + "\\n").encode())   # as C++ writes: straight to fd 2
        print("python says", file=sys.stderr)
        {inside}
    print("after", file=sys.stderr)
"""


def test_block_hides_native_lines_and_keeps_the_rest():
    result = run(SCRIPT.format(lines=NATIVE + KEPT, inside="pass"))
    assert result.returncode == 0
    assert result.stderr.splitlines() == [*KEPT, "python says", "after"]


def test_level_0_shows_everything():
    result = run(SCRIPT.format(lines=NATIVE, inside="pass"), TF_CPP_MIN_LOG_LEVEL="0")
    assert result.stderr.splitlines() == [*NATIVE, "python says", "after"]


def test_an_abort_inside_the_block_loses_nothing_that_was_printed():
    result = run(SCRIPT.format(lines=[*NATIVE, "F0000 00:00:1.2   3 x.cc:1] dying"],
                               inside="sys.stderr.flush(); os.abort()"))
    assert result.returncode != 0
    assert result.stderr.splitlines() == ["F0000 00:00:1.2   3 x.cc:1] dying", "python says"]


def test_an_exception_propagates_and_its_traceback_is_shown():
    result = run(SCRIPT.format(lines=NATIVE, inside="raise RuntimeError('boom')"))
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stderr
    assert not any(is_native_log_line(line) for line in result.stderr.splitlines())


def test_continuation_lines_go_with_their_record():
    lines = [
        "W0000 00:00:1796006776.683260   20316 local_rendezvous.cc:412] Local rendezvous is aborting with status: INVALID_ARGUMENT: Unknown image file format.",
        "\t [[{{function_node cond_false_17}}{{node cond/decode_image/DecodeImage}}]]",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
    ]
    result = run(SCRIPT.format(lines=lines, inside="pass"))
    assert result.stderr.splitlines() == [*lines[2:], "python says", "after"]


def test_until_exit_filters_to_the_end_and_exits_after_the_filter():
    script = """
        import atexit, os, sys
        from kerasgen.native_stderr import quiet_native_logs_until_exit
        quiet_native_logs_until_exit()
        atexit.register(lambda: os.write(2, b"W0000 00:00:1.5   7 r.cc:4] at exit\\n"))
        os.write(2, b"I0000 00:00:1.5   7 port.cc:153] start-up\\nkept\\n")
        sys.exit("kerasgen: error: the last line")
    """
    result = run(script)
    assert result.returncode == 1
    assert result.stderr == "kept\nkerasgen: error: the last line\n"
