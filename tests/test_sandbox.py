"Attacks on r1_ref.sandbox: each must be contained, score 0 within its limit and leave no process behind."
import os
import signal
import socket
import tempfile
import time

import pytest

import subprocess
import sys

from r1_ref.sandbox import (Limits, _acquire_uid, _release_uid, can_drop_privileges, processes_of_uid, run_program,
                            run_tests, run_tests_many, sandbox_info)

LIM = Limits(wall_s=2, cpu_s=2, memory_mb=256, fsize_mb=4)
SLACK = 1.5   # seconds allowed above wall_s for start-up and cleanup
root_only = pytest.mark.skipif(not can_drop_privileges(), reason="uid drop needs root")


def leftovers():
    "Pids of any process still running (or unreaped) under a sandbox uid."
    return processes_of_uid()


@pytest.fixture(autouse=True)
def no_leftovers():
    "Every test must leave no sandbox process behind."
    yield
    assert leftovers() == []


def judged(code, expected="pwned", lim=LIM):
    "Score `code` on one case whose expected output is what a successful attack prints; also return seconds."
    t0 = time.monotonic()
    score = run_tests(code, [dict(input="", output=expected)], lim)
    return score, time.monotonic() - t0


def test_well_behaved_program_passes():
    assert judged("print('pwned')")[0] == 1.0


def test_standard_library_is_importable():
    r = run_program("import socket, collections, fractions, heapq, json, re, math\nprint(math.gcd(12, 18))", limits=LIM)
    assert r.ok and r.stdout == "6\n", r.stderr


def test_infinite_loop():
    score, secs = judged("while True: pass\nprint('pwned')")
    assert score == 0.0 and secs < LIM.wall_s + SLACK


def test_sleeping_forever():
    r = run_program("import time\nwhile True: time.sleep(1)", limits=LIM)
    assert r.timed_out and r.seconds < LIM.wall_s + SLACK


@root_only
def test_fork_bomb():
    code = "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n"
    n_before = len(os.listdir("/proc"))
    score, secs = judged(code)
    assert score == 0.0 and secs < LIM.wall_s + SLACK
    assert len(os.listdir("/proc")) < n_before + 10


def test_memory_bomb():
    r = run_program("x = bytearray(8 << 30)\nprint('pwned')", limits=LIM)
    assert "MemoryError" in r.stderr and r.returncode == 1
    assert judged("x = [0] * (1 << 31)\nprint('pwned')")[0] == 0.0


def test_100mb_of_stdout():
    code = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))\n"
    r = run_program(code, limits=LIM)
    assert not r.ok and len(r.stdout) <= LIM.max_output and r.seconds < LIM.wall_s + SLACK
    assert r.returncode != 0 and "File too large" in r.stderr   # Python ignores SIGXFSZ: the write fails with EFBIG
    assert judged(code, expected="x" * (100 << 20))[0] == 0.0


@root_only
def test_writing_outside_its_dir():
    with tempfile.TemporaryDirectory() as d:
        targets = [os.path.join(d, "pwned"), "/root/pwned", os.path.join(os.getcwd(), "pwned")]
        code = ("ok = 0\nfor p in %r:\n    try: open(p, 'w').write('x'); ok += 1\n    except OSError: pass\n"
                "print('pwned' if ok else 'blocked')") % (targets,)
        assert judged(code)[0] == 0.0
        assert not any(os.path.exists(p) for p in targets)


def test_writing_inside_its_dir_works_and_is_deleted():
    code = "import os\nopen('f.txt', 'w').write('hi')\nprint(open('f.txt').read(), os.getcwd())"
    r = run_program(code, limits=LIM)
    assert r.ok and r.stdout.startswith("hi ")
    assert not os.path.exists(r.stdout.split()[1])


@root_only
def test_reading_parent_environment():
    os.environ["R1_REF_TEST_SECRET"] = "s3cr3t"
    code = ("import os\nfound = 's3cr3t' in str(dict(os.environ))\n"
            "try: found |= b's3cr3t' in open(f'/proc/{os.getppid()}/environ', 'rb').read()\n"
            "except OSError: pass\n"
            "try: found |= b's3cr3t' in open('/proc/1/environ', 'rb').read()\n"
            "except OSError: pass\n"
            "print('pwned' if found else 'nothing')")
    try: assert judged(code)[0] == 0.0
    finally: del os.environ["R1_REF_TEST_SECRET"]


@pytest.mark.skipif(not sandbox_info()["net_isolated"], reason="no network namespace on this machine")
def test_opening_a_socket():
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1); srv.settimeout(0.1)
    port = srv.getsockname()[1]
    code = ("import socket\ns = socket.create_connection(('127.0.0.1', %d), timeout=1)\ns.sendall(b'hi')\n"
            "print('pwned')") % port
    try:
        score, secs = judged(code)
        assert score == 0.0 and secs < LIM.wall_s + SLACK
        with pytest.raises(socket.timeout): srv.accept()
        r = run_program("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)", limits=LIM)
        assert r.returncode == 1 and "Network is unreachable" in r.stderr, r.stderr
    finally: srv.close()


@root_only
def test_killing_its_parent_and_us():
    code = ("import os, signal\nhits = 0\nfor p in (os.getppid(), %d, 1):\n"
            "    try: os.kill(p, signal.SIGKILL); hits += 1\n    except OSError: pass\n"
            "try: os.kill(-1, signal.SIGKILL)\nexcept OSError: pass\nprint('pwned' if hits else 'denied')") % os.getpid()
    score, secs = judged(code)
    assert score == 0.0 and secs < LIM.wall_s + SLACK   # we are still here to assert it


def test_closing_its_own_stdout():
    score, secs = judged("import os, time\nos.close(1)\ntime.sleep(100)\nprint('pwned')")
    assert score == 0.0 and secs < LIM.wall_s + SLACK
    assert judged("import os\nos.close(1)\nos.close(2)")[0] == 0.0


@root_only
def test_escaping_with_setsid_daemon():
    code = "import os, time\nif os.fork() == 0:\n    os.setsid(); time.sleep(100)\nprint('pwned')"
    r = run_program(code, limits=LIM)
    assert r.ok and r.seconds < 1.5   # the main program finished; its daemon was killed, not waited for


def test_early_exit_does_not_pass_a_test_script():
    assert run_tests("import sys\nsys.exit(0)", "assert False", LIM) == 0.0
    assert run_tests("import os\nos._exit(0)", "assert False", LIM) == 0.0


def test_parallel_attacks_do_not_disturb_good_programs():
    bad = ["while True: pass", "x = bytearray(8 << 30)", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass"]
    good = ["print(int(input()) + 1)"] * 6
    codes = bad + good
    tests = [[dict(input="1\n", output="2\n")]] * len(codes)
    assert run_tests_many(codes, tests, LIM, max_workers=4) == [0.0] * 3 + [1.0] * 6


def test_bad_arguments():
    with pytest.raises(ValueError, match="code"): run_program(None)
    with pytest.raises(ValueError, match=r"tests\[1\]"): run_tests("print(1)", [dict(input="", output="1"), dict(input="")])
    with pytest.raises(ValueError, match="codes has 2"): run_tests_many(["a", "b"], [[]])


def test_setup_failure_raises_instead_of_scoring_zero():
    bad = Limits(nofile=1 << 40)   # above the kernel's maximum: setrlimit fails in the child
    with pytest.raises(RuntimeError, match="could not set up"): run_program("print(1)", limits=bad)


def test_without_uid_drop_limits_still_apply():
    "The path taken when not root (here forced): rlimits, process group and wall clock only."
    from r1_ref.sandbox import _run_as
    r = _run_as("import time\nprint('x', flush=True)\nwhile True: time.sleep(1)", "", LIM, uid=None)
    assert r.timed_out and r.stdout == "x\n" and r.uid is None and r.seconds < LIM.wall_s + SLACK
    assert _run_as("x = bytearray(8 << 30)", "", LIM, uid=None).returncode == 1


@root_only
def test_uids_are_exclusive_across_processes():
    "A uid held by another process (say, another trainer rank) is not handed out here."
    holder = subprocess.Popen([sys.executable, "-c", "from r1_ref.sandbox import _acquire_uid; import sys, time\n"
                               "print(_acquire_uid(), flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        theirs = int(holder.stdout.readline())
        mine = [_acquire_uid() for _ in range(3)]
        assert theirs not in mine and len(set(mine)) == 3
        for u in mine: _release_uid(u)
    finally:
        holder.stdin.close(); holder.wait()
    import fcntl
    from r1_ref.sandbox import _lock_dir
    with open(os.path.join(_lock_dir(), str(theirs))) as f:   # the kernel released it when the holder exited
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
