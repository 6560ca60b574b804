"Checks of r1_ref.rewards beyond the chapter's examples: threads, timeouts, batches, the TRL calling convention."
import os
import threading
import time
from functools import partial

import pytest

from r1_ref.grpo import group_advantages
from r1_ref.rewards import (MathPool, accuracy_reward, code_reward, combine_rewards, extract_answer, format_reward,
                            language_consistency_reward, math_pool, overlong_penalty, split_think_answer,
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
