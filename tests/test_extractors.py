"""Answer readers (chapter 2's `EXTRACTORS`) and cons@k's rule for samples without an answer (chapter 5): lighteval's GSM8K
reading (`Metrics.expr_gold_metric`: math-verify's regexes by priority, `<think>...</think>` removed first) through the
reward, the worker pool, the benchmark runner and the `r1-ref eval` flags; lighteval's `maj@n`, where samples without an
answer vote together."""
import json, logging, os, sys, threading, time
import pytest
import r1_ref.rewards as R
from r1_ref.rewards import (EXTRACTORS, MathPool, accuracy_reward, drop_reasoning, extract_answer, judge_math,
                            lighteval_answer, resolve_extractor)
from r1_ref import evaluate as E
from r1_ref.rollout import Rollout

logging.getLogger("math_verify").setLevel(logging.ERROR)

# completion -> (what R1's rule reads, what lighteval's GSM8K metric reads)
CASES = {
    "The answer is 18.": (None, "18"),
    "Each box holds 6, so 3 boxes hold 18.\n#### 18": (None, "18"),
    "She has 5 apples, then buys 13 more: 18": (None, "18"),                       # a final bare number
    "3 + 4 = 7 apples, and 2 are left": (None, "2"),                               # the last number, right or wrong
    r"so the total is \boxed{18}, not 20.": ("18", "18"),                          # \boxed{} before any number
    "<think>6*3 = 18</think><answer>18</answer>": ("18", None),                    # `>18<`: no anchor for lighteval
    "<think>6*3 = 18</think>\n<answer>\n18\n</answer>": ("18", "18"),
    "<answer>17</answer> Actually, 18.": ("17", "18"),
    "<think>it is 17</think> The final answer is 18": (None, "18"),               # reasoning removed first
    "The answer is $1,200.": (None, "1200"),
    "no number at all": (None, None),
}


@pytest.mark.parametrize("completion", list(CASES), ids=range(len(CASES)))
def test_both_readers(completion):
    r1, le = CASES[completion]
    assert extract_answer(completion) == r1
    assert lighteval_answer(completion) == le
    assert resolve_extractor("r1")(completion) == r1 and resolve_extractor("lighteval")(completion) == le


def test_drop_reasoning_needs_both_tags():
    assert drop_reasoning("<think>a 1</think>b <think>c</think>d") == "b d"
    assert drop_reasoning("a 1</think> b") == "a 1</think> b"          # after a prefilled <think>: kept, as in lighteval


def test_registry_and_errors():
    assert set(EXTRACTORS) >= {"r1", "lighteval"}
    assert resolve_extractor("r1_ref.rewards:lighteval_answer") is lighteval_answer
    with pytest.raises(ValueError, match="unknown answer extractor 'lightevel'"): resolve_extractor("lightevel")
    with pytest.raises(ValueError, match="1 golds for 2 completions"): judge_math(["1"], ["1", "2"])
    with pytest.raises(ValueError, match="cannot import it"):
        R.EXTRACTORS["local"] = lambda c: c
        try: judge_math(["1"], ["1"], "local")
        finally: del R.EXTRACTORS["local"]


def test_accuracy_reward_with_each_reader():
    comps, golds = list(CASES), ["18"] * len(CASES)
    golds[-2] = "1200"
    r1 = accuracy_reward(comps, answer=golds)
    le = accuracy_reward(comps, answer=golds, extractor="lighteval")
    assert r1 == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert le == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert accuracy_reward(comps, answer=golds, extractor="lighteval", exact=True)[:2] == [1.0, 1.0]
    assert judge_math([None, "2"], ["The answer is 2", "The answer is 2"], "lighteval")[1] == [None, True]


# (gold, completion): read by `lighteval_answer` and compared as text, or parsed and compared as lighteval does
AGREE = [("18", "The answer is 18."), ("18", "#### 18"), ("2", "3 + 4 = 7 apples, and 2 are left"), ("0.5", "The answer is 1/2."),
         ("1200", "The answer is $1,200."), ("18", "It costs $18.00."), ("3", "Final answer: $x=3$"), ("18", r"\boxed{18}"),
         ("17", "<answer>17</answer> Actually, 18."), ("7", "no number"), ("24", r"so \boxed{\frac{48}{2}}"),
         ("0.75", "That is 3/4 of the pie."), ("-4", "answer: -4"), ("50", "The answer is 50%"), ("7", "3 + 4 = 7."),
         ("18", "<think>6*3 = 18</think><answer>18</answer>"), ("12", "<think>it is 17</think> The final answer is 12"),
         ("2.5", "She ran 5/2 miles."), (r"\frac{1}{3}", r"The answer is $\frac{1}{3}$."), ("10", "Total: 4 + 6 = 10 dollars")]


def lighteval_verdict(gold:str, completion:str) -> bool:
    "lighteval's comparison: the parsed objects of gold and prediction (fallback strings included), floats rounded to 5."
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    g = parse(gold, [ExprExtractionConfig(), LatexExtractionConfig()], fallback_mode="first_match", parsing_timeout=None)
    p = parse(drop_reasoning(completion), [ExprExtractionConfig(), LatexExtractionConfig(boxed_match_priority=0)],
              fallback_mode="first_match", parsing_timeout=None)
    return bool(p) and verify(g, p, float_rounding=5, timeout_seconds=None)


def test_reading_as_text_agrees_with_comparing_parsed_objects():
    _, correct = judge_math([g for g, _ in AGREE], [c for _, c in AGREE], "lighteval")
    assert correct == [lighteval_verdict(g, c) for g, c in AGREE]


def test_lighteval_reader_off_the_main_thread():
    "math-verify's own timeout uses signal.alarm, which fails off the main thread; the workers read with it switched off."
    out = {}
    t = threading.Thread(target=lambda: out.update(r=accuracy_reward(["The answer is 1/2.", "#### 3"], answer=[r"\frac12", "3"],
                                                                       extractor="lighteval")))
    t.start(); t.join(60)
    assert out["r"] == [1.0, 1.0]


def test_a_hanging_comparison_is_killed_and_the_next_completion_judged():
    pool = MathPool(n_workers=1)
    try:
        t0 = time.monotonic()
        res = pool.judge(["1", "2"], [r"\boxed{10^{10^{10^{10}}}}", "The answer is 2."], "r1_ref.rewards:lighteval_answer",
                         timeout_s=0.5)
        assert res[0] in ((MathPool.TIMEOUT, None), (False, "10^{10^{10^{10}}}")) and res[1] == (True, "2")
        assert time.monotonic() - t0 < 60
    finally: pool.close()


def test_a_reader_of_your_own_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_readers.py").write_text(
        "import re\ndef last_word_number(c):\n    m = re.findall(r'\\d+', c)\n    return m[-1] if m else None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    pool = MathPool(n_workers=1)                       # started here: its workers import from this directory
    monkeypatch.setattr(R, "_pool", pool)
    try:
        answers, correct = judge_math(["12", "5"], ["<answer>x12</answer>", "five"], "my_readers:last_word_number")
        assert (answers, correct) == (["12", None], [True, False])
        with pytest.raises(RuntimeError, match="cannot use the extractor 'no_such_module:f'"):
            pool.judge(["1"], ["1"], "no_such_module:f")
    finally: pool.close()


# --------------------------------------------------------------------------------------------- cons@k without answers
def test_unanswered_samples_vote_together_when_asked():
    few = ["12", None, None, "12", None]
    assert E.majority_vote(few) == 0
    assert E.majority_vote(few, unanswered="vote") == 1
    assert E.answer_groups(few, unanswered="vote") == [[0, 3], [1, 2, 4]]
    assert E.majority_vote([None, " ", "5"], "exact", unanswered="vote") == 0
    with pytest.raises(ValueError, match="unanswered="): E.majority_vote(few, unanswered="abstain")
    recs = [dict(problem=0, answer=a, correct=a == "12") for a in few]
    assert E.summarize(recs, ks=(5,), equal="exact")["cons@5"] == 1.0
    assert E.summarize(recs, ks=(5,), equal="exact", unanswered="vote")["cons@5"] == 0.0
    assert E.summarize(recs, ks=(5,), equal="exact")["answered"] == pytest.approx(0.4)


def test_lighteval_style_vote_matches_its_rule():
    "lighteval's MajAtN: max(all_answers, key=all_answers.count) over normalised texts, '' for no answer."
    import random
    rng = random.Random(0)
    for _ in range(300):
        answers = [rng.choice(["1", "2", "3", None]) for _ in range(rng.randint(1, 9))]
        texts = ["" if a is None else a for a in answers]
        winner = max(texts, key=texts.count)
        w = E.majority_vote(answers, "exact", unanswered="vote")
        assert texts[w] == winner and w == texts.index(winner)


# ------------------------------------------------------------------------------------------------ the benchmark runner
class Scripted:
    "An engine that answers every question with the same completions."
    def __init__(self, texts): self.texts = texts
    def generate(self, prompts, group_size):
        texts = [self.texts[j % len(self.texts)] for _ in prompts for j in range(group_size)]
        return Rollout([[0]] * len(texts), [[1] * 4 for _ in texts], texts, [False] * len(texts), group_size=group_size)


@pytest.fixture
def gsm8k_file(tmp_path):
    f = tmp_path / "gsm8k.jsonl"
    f.write_text("".join(json.dumps({"question": q, "answer": f"work\n#### {a}"}) + "\n" for q, a in [("q1", 18), ("q2", 18)]))
    return f


def test_run_benchmark_reads_answers_as_asked(gsm8k_file):
    eng = Scripted(["The answer is 18.", "<answer>18</answer>", "#### 18", "no idea"])
    r1 = E.run_benchmark("gsm8k", eng, n_samples=4, ks=(1, 4), data=str(gsm8k_file), progress=False)
    le = E.run_benchmark("gsm8k", eng, n_samples=4, ks=(1, 4), data=str(gsm8k_file), progress=False,
                         extractor="lighteval", unanswered="vote")
    assert (r1["extractor"], le["extractor"], le["unanswered"]) == ("r1", "lighteval", "vote")
    assert r1["pass@1"] == 0.25 and le["pass@1"] == 0.5
    assert r1["answered"] == 0.25 and le["answered"] == 0.5
    assert le["cons@4"] == 1.0                     # two 18s outvote one 'no answer' group of two: a tie, 18 came first


def test_format_rate_with_a_prefilled_think(gsm8k_file):
    eng = Scripted(["6*3 = 18\n</think>\n<answer>18</answer>"])
    s = E.run_benchmark("gsm8k", eng, n_samples=2, data=str(gsm8k_file), template="Q: {prompt}\nA: <think>\n", progress=False)
    assert s["format"] == 1.0 and s["pass@1"] == 1.0
    s = E.run_benchmark("gsm8k", eng, n_samples=2, data=str(gsm8k_file), template="Q: {prompt}\nA:", progress=False)
    assert s["format"] == 0.0


def test_eval_flags_reach_eval_cli(monkeypatch):
    seen = {}
    monkeypatch.setattr(E, "eval_cli", lambda *a, **kw: seen.update(args=a, kw=kw) or {})
    from r1_ref.cli import main
    main(["eval", "some/model", "--bench", "gsm8k", "--extractor", "lighteval", "--unanswered", "vote"])
    assert seen["kw"] == {"extractor": "lighteval", "unanswered": "vote"} and seen["args"][:2] == (["some/model"], "gsm8k")
    main(["eval", "some/model"])
    assert seen["kw"] == {"extractor": "r1", "unanswered": "skip"}
    with pytest.raises(SystemExit): main(["eval", "some/model", "--unanswered", "maybe"])


def test_bad_reading_options_fail_before_any_model_loads():
    "A mistyped --extractor / --unanswered is one clear error, raised before a model is loaded or sampled."
    from r1_ref.evaluate import eval_cli
    with pytest.raises(ValueError, match="answer extractor 'nosuchmod:read'"):
        eval_cli(["no/such-model"], "toy", extractor="nosuchmod:read")
    with pytest.raises(ValueError, match="unanswered='count'"):
        eval_cli(["no/such-model"], "toy", unanswered="count")
