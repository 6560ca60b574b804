"""Checks of r1_ref.rewards beyond the chapter's examples: threads, timeouts, batches, the TRL calling convention,
the reward registry and 'module:function' names."""
import os
import subprocess
import sys
import threading
import time
from functools import partial

import pytest

import r1_ref.rewards as R
from r1_ref.grpo import group_advantages
from r1_ref.rewards import (REWARDS, MathPool, RewardSpecError, accuracy_reward, code_reward, combine_rewards,
                            extract_answer, format_reward, language_consistency_reward, make_reward, math_pool,
                            overlong_penalty, register_reward, resolve_reward, reward_part_names, split_think_answer,
                            tag_count_reward)

GOOD = "<think>reason</think><answer>42</answer>"


def test_format_whitespace_and_conversations():
    assert format_reward(["  \n<think> a </think>\n\n<answer> b </answer>\n  "]) == [1.0]
    assert format_reward([[{"role": "assistant", "content": GOOD}]]) == [1.0]
    assert format_reward(["x" + GOOD]) == [0.0]                      # text before <think>
    assert format_reward(["<answer>1</answer><think>a</think>"]) == [0.0]   # wrong order
    assert format_reward(["<think>a</think><answer>1</answer></answer>"]) == [0.0]
    assert split_think_answer("<think>a</think><answer>1</answer>") == ("a", "1")


def test_tag_count_is_between_zero_and_one():
    vals = tag_count_reward(["", GOOD, GOOD + GOOD, "</think>"], think_prefilled=False)
    assert vals == [0.0, 1.0, 0.0, 0.25]
    assert tag_count_reward(["r</think><answer>1</answer>"], think_prefilled=True) == [1.0]


def test_accuracy_from_a_worker_thread():
    "math-verify's own signal-based timeout fails off the main thread; ours must not."
    out = {}
    t = threading.Thread(target=lambda: out.update(r=accuracy_reward([r"<answer>\frac{1}{2}</answer>", "<answer>3</answer>"],
                                                                      answer=["0.5", "4"])))
    t.start(); t.join()
    assert out["r"] == [1.0, 0.0]


def test_accuracy_numbers_latex_sets_and_none():
    comps = ["<answer>1,000</answer>", r"<answer>$\sqrt{4}$</answer>", r"<answer>\{3, 1, 2\}</answer>",
             r"<answer>x = 2</answer>", "<answer>2</answer>", "<answer>5</answer>", "<answer>5</answer>"]
    golds = ["1000", "2", r"\{1,2,3\}", "2", r"\dfrac{4}{2}", None, ""]
    assert accuracy_reward(comps, answer=golds) == [1.0, 1.0, 1.0, 1.0, 1.0, None, None]


def test_accuracy_batch_is_fast_enough():
    "256 distinct fractions, half right (as LaTeX), half wrong (inverted)."
    n = 256
    comps = [f"<think>t</think><answer>{i}/{i + 1}</answer>" for i in range(1, n + 1)]
    golds = [rf"\frac{{{2 * i}}}{{{2 * i + 2}}}" if i % 2 else f"{i + 1}/{i}" for i in range(1, n + 1)]
    math_pool().map([("1", "1")])   # warm the workers
    t0 = time.monotonic()
    r = accuracy_reward(comps, answer=golds)
    dt = time.monotonic() - t0
    assert r == [float(i % 2 == 1) for i in range(1, n + 1)]
    print(f"accuracy_reward: {n} completions in {dt:.2f}s ({n / dt:.0f}/s)")
    assert dt < 20


def test_math_pool_timeout_kills_and_recovers():
    pool = MathPool(n_workers=1)
    try:
        t0 = time.monotonic()
        res = pool.map([("1", r"10^{10^{10^{10}}}"), ("2", "2"), ("3", "4")], timeout_s=0.5)
        assert res == [MathPool.TIMEOUT, True, False]
        assert time.monotonic() - t0 < 30
        pids = [p.pid for p in pool.procs if p is not None]
    finally:
        pool.close()
    assert pool.procs == [None]
    for pid in pids: assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]


def test_accuracy_exact_mode_needs_no_workers():
    assert accuracy_reward(["<answer>12</answer>", r"\boxed{12}", "<answer>12.0</answer>"], answer=[12, "12", "12"],
                           exact=True) == [1.0, 1.0, 0.0]


def test_extract_answer_prefers_answer_block():
    assert extract_answer(r"\boxed{1} <answer>2</answer>") == "2"
    assert extract_answer(r"<answer>1</answer> text <answer>\boxed{3}</answer>") == "3"


def test_code_reward_conversations_and_parallel_calls():
    prog = [{"role": "assistant", "content": "<answer>```python\nprint(input()[::-1])\n```</answer>"}]
    tests = [dict(input="abc\n", output="cba\n"), dict(input="xy\n", output="yx\n")]
    res = {}
    def call(k): res[k] = code_reward([prog] * 3, tests=[tests] * 3)
    ts = [threading.Thread(target=call, args=(k,)) for k in range(2)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert res == {0: [1.0] * 3, 1: [1.0] * 3}


def test_code_reward_rejects_bad_columns():
    with pytest.raises(ValueError, match="'tests' is required"): code_reward(["x"])
    with pytest.raises(ValueError, match="'tests' has 2 values"): code_reward(["x"], tests=["a", "b"])
    with pytest.raises(ValueError, match="completions\\[0\\]"): code_reward([None], tests=["assert True"])


def test_language_prefilled_and_no_think():
    assert language_consistency_reward(["Zuerst rechnen wir</think><answer>5</answer>"], think_prefilled=True,
                                       vocabulary={"zuerst", "rechnen", "wir"}) == [1.0]
    assert language_consistency_reward(["<answer>5</answer>"]) == [0.0]
    assert language_consistency_reward(["just words, no tags"]) == [1.0]


def test_overlong_boundaries_and_errors():
    f = partial(overlong_penalty, max_length=100, cache_length=20)
    assert f([""] * 5, completion_lengths=[80, 81, 90, 100, 101]) == [0.0, -0.05, -0.5, -1.0, -1.0]
    with pytest.raises(ValueError, match="completion_lengths"): f(["a", "b"], completion_lengths=[1])


def test_combine_follows_trl_calling_convention():
    comb = combine_rewards(dict(fmt=format_reward, acc=partial(accuracy_reward, exact=True)), dict(fmt=0.5, acc=1.0))
    totals, parts = comb([GOOD, "<answer>42</answer>", GOOD], prompts=["p"] * 3, completion_ids=[[1], [2], [3]],
                         trainer_state=None, answer=["42", "42", None])
    assert totals == [1.5, 1.0, None] and parts["fmt"] == [1.0, 0.0, 1.0] and parts["acc"] == [1.0, 1.0, None]
    # a None with weight 0 does not poison the total
    comb0 = combine_rewards(dict(fmt=format_reward, acc=partial(accuracy_reward, exact=True)), dict(fmt=1.0, acc=0.0))
    assert comb0([GOOD], answer=[None])[0] == [1.0]
    # the totals feed chapter 1's advantages directly, None and all
    adv = group_advantages(totals + [0.0], group_size=4)
    assert adv[2] == 0 and abs(float(adv.sum())) < 1e-5


def test_combine_rejects_bad_reward_lengths():
    comb = combine_rewards(dict(bad=lambda completions, **_: [1.0]))
    with pytest.raises(ValueError, match="'bad' returned 1 values for 2"): comb(["a", "b"])


# --- the registry, 'module:function' names, make_reward ---

USER_MODULE = """
def brevity(completions, **kwargs):
    return [-len(completion) / 100 for completion in completions]

def says_solution(prompts, completions, solution, **kwargs):
    return [None if s is None else float(p.startswith("Q") and s in c)
            for p, c, s in zip(prompts, completions, solution)]

def scaled(completions, scale=1.0, **kwargs):
    return [scale * len(c) for c in completions]

def format(completions, **kwargs):
    return [0.5] * len(completions)

threshold = 0.5
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    "A fresh module `NAME.py` in a temporary current directory that is not on sys.path; returns NAME."
    name = f"user_rm_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.setattr(R, "REWARDS", dict(R.REWARDS))   # registrations stay in the test
    yield name
    sys.modules.pop(name, None)


def test_registry_has_the_builtins_and_lazy_entries():
    for name, fn in [("format", format_reward), ("tag_count", tag_count_reward), ("accuracy", accuracy_reward),
                     ("code", code_reward), ("language", language_consistency_reward), ("overlong", overlong_penalty)]:
        assert REWARDS[name] is fn and resolve_reward(name) is fn
    assert REWARDS["toy_language"] == "r1_ref.toy:toy_language_reward"
    assert resolve_reward("reflection").__name__ == "reflection_reward"


def test_importing_rewards_imports_neither_toy_nor_pipeline():
    code = "import sys, r1_ref.rewards; print(sorted(m for m in sys.modules if m in ('r1_ref.toy', 'r1_ref.pipeline')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_user_module_from_the_current_directory(user_module):
    brevity = resolve_reward(f"{user_module}:brevity")
    assert brevity.__module__ == user_module and brevity(completions=["ab", "abcd"]) == [-0.02, -0.04]


def test_user_module_from_a_console_script(tmp_path):
    "A console script has its bin folder, not the current directory, on sys.path; the module is still found."
    (tmp_path / "cwd_rm.py").write_text(USER_MODULE)
    bin_ = tmp_path / "bin"; bin_.mkdir()
    script = bin_ / "launch"
    script.write_text(f"#!{sys.executable}\nfrom r1_ref.rewards import resolve_reward\n"
                      "print(resolve_reward('cwd_rm:brevity')(completions=['abc']))\n")
    script.chmod(0o755)
    res = subprocess.run([str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "[-0.03]", res.stderr


@pytest.mark.parametrize("spec,msg", [
    ("acuracy", "unknown reward 'acuracy'; known: format, tag_count, accuracy"),
    ("no_such_module_xyz:f", "reward 'no_such_module_xyz:f': cannot import module 'no_such_module_xyz' "
                             "(ModuleNotFoundError: No module named 'no_such_module_xyz')"),
    ("{m}:brevty", "reward '{m}:brevty': module '{m}' has no attribute 'brevty'"),
    ("{m}:threshold", "reward '{m}:threshold': {m}:threshold is a float, not a function"),
    (":brevity", "expected 'package.module:function'"),
    ("{m}:", "expected 'package.module:function'"),
])
def test_bad_specs_give_one_clear_error(user_module, spec, msg):
    spec, msg = spec.format(m=user_module), msg.format(m=user_module)
    with pytest.raises(RewardSpecError) as e: resolve_reward(spec)
    assert msg in str(e.value) and isinstance(e.value, ValueError)
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)


def test_a_module_that_fails_on_import(tmp_path, monkeypatch):
    (tmp_path / "broken_rm.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RewardSpecError, match=r"cannot import module 'broken_rm' \(RuntimeError: boom\)"):
        resolve_reward("broken_rm:f")
    sys.modules.pop("broken_rm", None)


def test_register_reward_as_call_and_decorator(user_module):
    @register_reward("shout")
    def shout(completions, **kwargs): return [float(c.isupper()) for c in completions]
    assert shout.__name__ == "shout" and resolve_reward("shout") is shout
    register_reward("short", f"{user_module}:brevity")
    assert resolve_reward("short").__name__ == "brevity"
    with pytest.raises(RewardSpecError, match="without ':'"): register_reward("a:b", shout)
    with pytest.raises(RewardSpecError, match="neither a function"): register_reward("x", "no_colon")
    assert "shout" in str(pytest.raises(RewardSpecError, resolve_reward, "nope").value)


def test_trl_style_functions_work_unchanged(user_module):
    reward = make_reward(["format", f"{user_module}:brevity", f"{user_module}:says_solution"], weights=[1.0, 0.0, 1.0])
    comps = ["<think>a</think><answer>42</answer>", "<answer>42</answer>", "<think>a</think><answer>4</answer>"]
    totals, parts = reward(prompts=["Q1", "Q2", "Q3"], completions=comps, completion_ids=[[1]] * 3,
                           solution=["42", None, "42"])
    assert list(parts) == ["format", "brevity", "says_solution"]
    assert parts["says_solution"] == [1.0, None, 0.0] and totals == [2.0, None, 1.0]
    assert parts["brevity"] == [-len(c) / 100 for c in comps]


def test_functions_get_prompts_and_ids_by_keyword():
    seen = {}
    def trl_order(prompts, completions, completion_ids, **kwargs):   # TRL's parameter order
        seen.update(prompts=prompts, completion_ids=completion_ids, kwargs=kwargs)
        return [1.0] * len(completions)
    totals, _ = combine_rewards(dict(f=trl_order))(["c1", "c2"], prompts=["p1", "p2"], completion_ids=[[1], [2]],
                                                   answer=["a", "b"])
    assert totals == [1.0, 1.0] and seen == dict(prompts=["p1", "p2"], completion_ids=[[1], [2]],
                                                 kwargs=dict(answer=["a", "b"]))
    combine_rewards(dict(f=trl_order))(["c"])          # the trainer's call today: prompts and ids default to None
    assert seen["prompts"] is None and seen["completion_ids"] is None
    with pytest.raises(TypeError): combine_rewards(dict(f=trl_order))(["c"], ["p"])   # no positional prompts


def test_every_builtin_accepts_trl_keywords():
    cols = dict(prompts=["p"], completions=["<think>a</think><answer>1</answer>"], completion_ids=[[1, 2]],
                answer=["1"], tests=[None], solution=["x"], trainer_state=None)
    kw = {"accuracy": dict(exact=True), "overlong": dict(max_length=4, cache_length=2)}
    for name in REWARDS:
        fn = resolve_reward(name)
        vals = fn(**cols, **kw.get(name, {}))
        assert len(vals) == 1, name


def test_make_reward_binds_kwargs_and_checks_them(user_module):
    m = user_module
    reward = make_reward(["accuracy", "overlong", f"{m}:scaled"],
                         kwargs={"accuracy": {"exact": True}, "overlong": {"max_length": 4, "cache_length": 2},
                                 "scaled": {"scale": 2.0}})      # a 'module:function' by its part name
    totals, parts = reward(["<answer>7</answer>", "<answer>8</answer>"], completion_ids=[[0] * 3, [0] * 5],
                           answer=["7", "7"])
    assert parts == {"accuracy": [1.0, 0.0], "overlong": [-0.5, -1.0], "scaled": [36.0, 36.0]}
    assert make_reward([f"{m}:scaled"], kwargs={f"{m}:scaled": {"scale": 0.0}})(["ab"])[0] == [0.0]   # or by spec
    with pytest.raises(RewardSpecError, match=r"reward 'code' has no parameter \['timeout'\]; its parameters"):
        make_reward(["code"], kwargs={"code": {"timeout": 5}})
    with pytest.raises(RewardSpecError, match=r"kwargs for \['acuracy'\], which are not among"):
        make_reward(["accuracy"], kwargs={"acuracy": {"exact": True}})
    with pytest.raises(RewardSpecError, match="kwargs must be a dict"):
        make_reward(["accuracy"], kwargs={"accuracy": 1})
    with pytest.raises(RewardSpecError, match="listed twice"): make_reward(["format", "format"])
    with pytest.raises(RewardSpecError, match="1 reward weights for 2 rewards"): make_reward(["format", "code"], [1.0])
    with pytest.raises(RewardSpecError, match="unknown reward 'nope'"): make_reward(["format", "nope"])


def test_part_names_and_collisions(user_module):
    m = user_module
    assert reward_part_names(["format", f"{m}:brevity"]) == ["format", "brevity"]
    assert reward_part_names(["a.b:f", "c:f", "g"]) == ["a.b:f", "c:f", "g"]
    totals, parts = make_reward(["format", f"{m}:format"])(["<think>a</think><answer>1</answer>"])
    assert parts == {"format": [1.0], f"{m}:format": [0.5]} and totals == [1.5]
