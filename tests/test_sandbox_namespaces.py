"""The sandbox's own file system and process view (mount, PID and IPC namespaces).

Each attack must score 0 and leave nothing behind, as root (unshare) and as an unprivileged user (a user namespace);
where the kernel refuses namespaces, one warning must name what is not isolated and the other layers must still hold.
The unprivileged runs are child Pythons that drop to a uid with no account (from root) before importing r1_ref.
"""
import functools
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import r1_ref
from r1_ref.sandbox import N_UIDS, UID_BASE, _free_uids, can_drop_privileges, processes_of_uid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(r1_ref.__file__)))
ROOT = can_drop_privileges()
USER = _free_uids(base=UID_BASE - 2 * N_UIDS, n=1)[0] if ROOT else os.getuid()   # no account, no processes
SANDBOX_UIDS = set(_free_uids()) | {USER}
TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
root_only = pytest.mark.skipif(not ROOT, reason="needs root")


@pytest.fixture(autouse=True)
def no_leftovers():
    "Every test must leave no process of a sandbox uid behind."
    yield
    assert processes_of_uid() == []
    if ROOT: assert processes_of_uid(USER) == []


@pytest.fixture
def answer_keys():
    "World-readable files the trainer wrote in /tmp, /var/tmp and /dev/shm (path -> content), as a careless one would."
    keys = {}
    for d in TMP_DIRS:
        fd, path = tempfile.mkstemp(prefix="r1_ref-answer-key-", dir=d)
        os.write(fd, os.urandom(8).hex().encode())
        os.close(fd)
        os.chmod(path, 0o644)
        keys[path] = open(path).read()
    yield keys
    for path in keys: os.remove(path)


def shm_segments() -> set:
    "SysV shared memory segments on this machine created by a sandbox uid (or the test's user)."
    with open("/proc/sysvipc/shm") as f: rows = [line.split() for line in f.readlines()[1:]]
    return {r[1] for r in rows if int(r[9]) in SANDBOX_UIDS}


# ------------------------------------------------------------------ what runs inside the (unprivileged) trainer
def run_attacks(repo:str, keys:dict) -> dict:
    "Run every file-system and process attack through the sandbox, as whoever we are; what came of each."
    import glob, os, subprocess, sys, tempfile, warnings
    sys.path.insert(0, repo)
    from r1_ref.sandbox import Limits, run_program, run_tests, sandbox_info
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = sandbox_info()
        if not info["isolated"]: return dict(info=info)                  # the caller skips; kill(-1) would hit us
        lim = Limits(wall_s=3, cpu_s=2, memory_mb=256, fsize_mb=4)
        tok, me = os.urandom(6).hex(), os.getpid()
        decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])   # another process of ours
        write = "try:\n    open({!r}, 'w').write('x')\n    print('pwned')\nexcept OSError: print('blocked')"
        dirs = ("/tmp", "/var/tmp", "/dev/shm")
        attacks = {f"write {d}": (write.format(f"{d}/r1_ref-planted-{tok}"), "pwned") for d in dirs}
        attacks.update({f"read {p}": (f"print(open({p!r}).read(), end='')", text) for p, text in keys.items()})
        attacks["list /proc"] = ("import os\npids = {int(p) for p in os.listdir('/proc') if p.isdigit()}\n"
                                 "print('pwned' if pids - {1, os.getpid()} else 'blocked')", "pwned")
        attacks["read our cmdline"] = (f"print(open('/proc/{me}/cmdline').read() and 'pwned')", "pwned")
        attacks["signal"] = (f"import os, signal\nhits = 0\nfor p in ({me}, {decoy.pid}):\n"
                             "    try: os.kill(p, 0); hits += 1\n    except OSError: pass\n"
                             f"for p in ({decoy.pid}, {me}, -1):\n"
                             "    try: os.kill(p, signal.SIGKILL)\n    except OSError: pass\n"
                             "print('pwned' if hits else 'blocked')", "pwned")
        scores = {k: run_tests(code, [dict(input="", output=out)], lim) for k, (code, out) in attacks.items()}
        shm = run_program("import ctypes\nprint(ctypes.CDLL(None).shmget(0, 1 << 20, 0o1600))", limits=lim)
        leftovers = [p for d in dirs for p in glob.glob(f"{d}/*{tok}*")]
        decoy_alive = decoy.poll() is None
        decoy.kill()
        decoy.wait()
    host_writes = {}
    for d in dirs:                                                        # outside the sandbox we may write there
        try:
            with tempfile.NamedTemporaryFile(dir=d): host_writes[d] = True
        except OSError: host_writes[d] = False
    return dict(info=info, scores=scores, shm_created=shm.stdout.strip().isdigit(), leftovers=leftovers,
                decoy_alive=decoy_alive, host_reads={p: open(p).read() == t for p, t in keys.items()},
                host_writes=host_writes, warnings=[str(w.message) for w in caught if w.category is RuntimeWarning])


def run_fallback(repo:str, key:str) -> dict:
    "Run programs where namespaces are impossible: the warnings given, whether the limits hold, the holes left."
    import os, sys, warnings
    sys.path.insert(0, repo)
    from r1_ref.sandbox import Limits, run_program, run_tests, run_tests_many, sandbox_info
    lim = Limits(wall_s=2, cpu_s=1, memory_mb=256, fsize_mb=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        good = run_tests_many(["print(int(input()) + 1)"] * 4, [[dict(input="1\n", output="2\n")]] * 4, lim, 2)
        memory = run_program("x = bytearray(8 << 30)", limits=lim)
        loop = run_program("while True: pass", limits=lim)
        key_read = run_tests(f"print(open({key!r}).read(), end='')", [dict(input="", output=open(key).read())], lim)
        info = sandbox_info()
    return dict(warnings=[str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)], good=good,
                memory_error="MemoryError" in memory.stderr, loop_stopped=loop.timed_out or loop.returncode == -24,
                isolated=[memory.isolated, loop.isolated], key_read=key_read, info=info)


# ------------------------------------------------------------------ running it as an unprivileged user
DROP = r"""
import ctypes, os, sys
uid, forbid, argv = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3:]
libc = ctypes.CDLL(None, use_errno=True)
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    libc.prctl(4, 1, 0, 0, 0)                                     # PR_SET_DUMPABLE, for /proc/self/*_map below
gid = os.getgid()
if forbid and libc.unshare(0x10000000) == 0:                      # a user namespace in which the kernel refuses
    try:                                                          # new ones, as an admin may configure it
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f: f.write(text)
        with open("/proc/sys/user/max_user_namespaces", "w") as f: f.write("0")
    except OSError: pass                                          # refused already (e.g. AppArmor): as good
os.execv(argv[0], argv)                                           # a non-root uid keeps no capabilities across exec
"""


def call_in_child(python:str, fn, *args, forbid_user_namespaces:bool=False, preexec_fn=None, drop:bool=True):
    "Run `fn(*args)` in a child `python` (as USER if `drop`, in a user namespace that forbids new ones if asked)."
    src = f"{inspect.getsource(fn)}\nimport json\nprint(json.dumps({fn.__name__}(*{args!r})))"
    cmd = [python, "-c", src]
    if drop: cmd = [sys.executable, "-I", "-c", DROP, str(USER), str(int(forbid_user_namespaces))] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd="/", preexec_fn=preexec_fn)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@functools.cache
def user_python() -> str|None:
    "A Python that USER may run and that imports r1_ref.sandbox (ours may live where USER cannot enter, e.g. /root)."
    if not ROOT: return sys.executable
    for py in dict.fromkeys(filter(None, [sys.executable, shutil.which("python3"), "/usr/bin/python3"])):
        check = [sys.executable, "-I", "-c", DROP, str(USER), "0", py, "-c",
                 f"import sys; sys.path.insert(0, {REPO!r}); import ctypes, r1_ref.sandbox"]
        if subprocess.run(check, capture_output=True, cwd="/").returncode == 0: return py
    return None


def check_contained(res:dict, keys:dict):
    "Every attack scored 0, would have worked outside, and left nothing behind."
    assert res["info"]["isolated"] and res["info"]["why_not_isolated"] is None
    assert res["scores"] == {k: 0.0 for k in res["scores"]}, res["scores"]
    assert len(res["scores"]) == 3 + len(keys) + 3
    assert all(res["host_reads"].values()) and all(res["host_writes"].values())   # the attacks are real ones
    assert res["shm_created"]                                                        # ... inside its own namespace
    assert res["leftovers"] == [] and res["decoy_alive"]
    assert res["warnings"] == []
    for d in TMP_DIRS: assert not [f for f in os.listdir(d) if f.startswith("r1_ref-planted-")]


# ------------------------------------------------------------------ tests
@root_only
def test_attacks_as_root_score_0_and_leave_nothing(answer_keys):
    shm_before = shm_segments()
    res = run_attacks(REPO, answer_keys)
    if not res["info"]["isolated"]: pytest.skip(f"no namespaces for root here: {res['info']['why_not_isolated']}")
    check_contained(res, answer_keys)
    assert res["info"]["uid_drop"]
    assert shm_segments() == shm_before


def test_attacks_as_unprivileged_user_score_0_and_leave_nothing(answer_keys):
    python = user_python()
    if python is None: pytest.skip(f"no Python that uid {USER} may run (and import r1_ref from {REPO})")
    shm_before = shm_segments()
    res = call_in_child(python, run_attacks, REPO, answer_keys) if ROOT else run_attacks(REPO, answer_keys)
    if not res["info"]["isolated"]:
        pytest.skip(f"the kernel refuses user namespaces here ({res['info']['why_not_isolated']}); "
                    "test_fallback_as_unprivileged_user checks the warning instead")
    check_contained(res, answer_keys)
    assert not res["info"]["uid_drop"]                                    # the user namespace did it alone
    assert shm_segments() == shm_before


def check_fallback(res:dict, open_:str):
    "One warning naming what is open; the other layers still hold; the answer key is (as warned) readable."
    assert len(res["warnings"]) == 1, res["warnings"]
    w = res["warnings"][0]
    for word in ("/tmp", "/var/tmp", "/dev/shm", "world-readable", open_, res["info"]["why_not_isolated"]):
        assert word in w, (word, w)
    assert res["good"] == [1.0] * 4 and res["memory_error"] and res["loop_stopped"]
    assert res["isolated"] == [False, False] and not res["info"]["isolated"]
    assert res["key_read"] == 1.0


def test_fallback_as_unprivileged_user(answer_keys):
    "In a user namespace where `user.max_user_namespaces` is 0, as an admin may set it, the kernel refuses ours."
    python = user_python()
    if python is None: pytest.skip(f"no Python that uid {USER} may run (and import r1_ref from {REPO})")
    key = next(p for p in answer_keys if p.startswith("/tmp/"))
    res = call_in_child(python, run_fallback, REPO, key, forbid_user_namespaces=True, drop=True)
    if res["info"]["isolated"]: pytest.skip("could not make the kernel refuse user namespaces to a child here")
    check_fallback(res, "signal")
    assert "unshare" in res["info"]["why_not_isolated"]
    assert not res["info"]["uid_drop"]


@root_only
def test_fallback_as_root_without_cap_sys_admin(answer_keys):
    "Root without CAP_SYS_ADMIN (a default Docker container) may not unshare: the uid drop and rlimits remain."
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    no_sys_admin = lambda: libc.prctl(24, 21, 0, 0, 0)                   # PR_CAPBSET_DROP, CAP_SYS_ADMIN
    key = next(p for p in answer_keys if p.startswith("/tmp/"))
    res = call_in_child(sys.executable, run_fallback, REPO, key, preexec_fn=no_sys_admin, drop=False)
    check_fallback(res, "/proc")
    assert res["info"]["uid_drop"] and "Operation not permitted" in res["info"]["why_not_isolated"]
