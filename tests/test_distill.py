"SFT and distillation as a user runs them: the CLI end to end, resume after kill -9, and bad input."
import json, subprocess
from pathlib import Path
import pytest

COMMON = ["toy_train=48", "toy_eval=8", "eval_max=8", "max_new_tokens=40", "progress=false", "batch_size=8", "micro_batch_size=4"]


def r1ref(*args, timeout=600):
    return subprocess.run(["r1-ref", *args], capture_output=True, text=True, timeout=timeout)


def save_tiny(path, extra_tokens=()):
    "A tiny randomly initialised toy model (1 layer) and the toy tokenizer, saved like a hub checkpoint."
    from r1_ref.toy import build_tokenizer, build_model
    tok = build_tokenizer()
    if extra_tokens: tok.add_tokens(list(extra_tokens))
    build_model(tok, hidden_size=48, num_hidden_layers=1, intermediate_size=96).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_traces(path, n=48, short=False):
    "Correct traces of `a+(a+7)`: the toy's scratchpad, or (`short`) a fixed two-token thought that a tiny model learns fast."
    from r1_ref.toy import toy_completion
    think = lambda a, b: f"<think>ok</think><answer>{a + b}</answer>" if short else toy_completion(a, b, "think")
    rows = [{"prompt": f"{a}+{a + 7}", "completion": think(a, a + 7), "answer": str(2 * a + 7)} for a in range(10, 10 + n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def metrics(path):
    rows = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    return [{k: v for k, v in r.items() if k != "time_step"} for r in rows]


@pytest.fixture(scope="module")
def formatted_teacher(tmp_path_factory):
    "A tiny model taught the <think>/<answer> format by `r1-ref sft` on hand-written traces."
    d = tmp_path_factory.mktemp("teacher")
    model, data = save_tiny(d / "init"), write_traces(d / "traces.jsonl", short=True)
    res = r1ref("sft", f"model={model}", f"sft_data={data}", *COMMON, "steps=60", "lr=1e-2", "eval_split=null",
                f"output_dir={d / 'run'}", "save_steps=60")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = metrics(d / "run" / "metrics.jsonl")
    assert rows[-1]["loss"] < 0.5 * rows[1]["loss"]
    return d / "run"


def test_toy_preset_is_the_default_config():
    from r1_ref.distill import SFTConfig, load_sft_config
    assert load_sft_config(Path(__file__).parents[1] / "configs" / "toy_distill.yaml") == SFTConfig()
    load_sft_config(Path(__file__).parents[1] / "configs" / "distill-qwen2.5-0.5b-gsm8k.yaml")


def test_distill_cli_traces_then_logit_kd(formatted_teacher, tmp_path):
    student = save_tiny(tmp_path / "student")
    out = tmp_path / "distill"
    res = r1ref("distill", f"teacher={formatted_teacher}", f"model={student}", "rewards=[format]", "samples_per_prompt=2",
                "kd_alpha=0.5", "steps=4", *COMMON, f"output_dir={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    traces = [json.loads(l) for l in (out / "traces.jsonl").read_text().splitlines()]
    stats = json.loads((out / "traces.stats.json").read_text())
    assert stats["generated"] == 96 and stats["kept"] == len(traces) > 0
    assert all(t["completion"].startswith("<think>") and t["completion"].endswith("</answer>") for t in traces)
    rows = metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4] and all("kd" in r and "ce" in r for r in rows[1:])
    assert "eval/format" in rows[0] and "eval/format" in rows[-1]
    assert (out / "checkpoint-000004" / "trainer_state.pt").exists() and (out / "curves.png").exists()
    assert "held-out evaluation" in res.stdout


def test_sft_kill9_then_resume_reproduces_metrics(tmp_path, kill9_then_resume):
    model, data = save_tiny(tmp_path / "m"), write_traces(tmp_path / "t.jsonl")
    common = [f"model={model}", f"sft_data={data}", *COMMON, "steps=8", "save_steps=2", "eval_steps=4", "lr=3e-3"]
    full = r1ref("sft", *common, f"output_dir={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr[-3000:]
    out = tmp_path / "killed"
    resumed = kill9_then_resume("sft", common, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics(out / "metrics.jsonl") == metrics(tmp_path / "full" / "metrics.jsonl")


def test_empty_trace_set_says_how_many_and_why(tmp_path):
    teacher = save_tiny(tmp_path / "garbage")   # untrained: never well formatted
    out = tmp_path / "distill"
    res = r1ref("distill", f"teacher={teacher}", f"model={teacher}", "samples_per_prompt=2", *COMMON, f"output_dir={out}")
    assert res.returncode != 0
    assert "kept 0 of 96 completions" in res.stderr and "format" in res.stderr, res.stderr[-2000:]
    assert not (out / "traces.jsonl").exists()


def test_logit_kd_with_a_different_tokenizer_is_refused(formatted_teacher, tmp_path):
    student = save_tiny(tmp_path / "student", extra_tokens=["<wait>"])
    res = r1ref("sft", f"model={student}", f"teacher={formatted_teacher}", "kd_alpha=1.0",
                f"sft_data={write_traces(tmp_path / 't.jsonl')}", *COMMON, f"output_dir={tmp_path / 'o'}")
    assert res.returncode != 0 and "needs one tokenizer" in res.stderr and "<wait>" in res.stderr, res.stderr[-2000:]


def test_bad_sft_rows_name_the_row(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"prompt": "1+1", "completion": "<answer>2</answer>"}) + "\n" + json.dumps({"prompt": "2+2", "completion": ""}) + "\n")
    res = r1ref("sft", f"model={save_tiny(tmp_path / 'm')}", f"sft_data={data}", *COMMON, f"output_dir={tmp_path / 'o'}")
    assert res.returncode != 0 and "SFT data row 1 has no 'completion'" in res.stderr, res.stderr[-2000:]


def test_sft_scores_with_a_user_reward_module(tmp_path):
    "`rewards: [format, my_rewards:short]` in `r1-ref sft`: the held-out evaluation logs the user's reward; a bad spec is one error."
    (tmp_path / "my_rewards.py").write_text("def short(completions, **kwargs): return [float(len(c) < 1000) for c in completions]\n")
    args = [f"model={save_tiny(tmp_path / 'm')}", f"sft_data={write_traces(tmp_path / 't.jsonl', n=8, short=True)}", *COMMON,
            "steps=1", "eval_max=4", "output_dir=o"]
    res = subprocess.run(["r1-ref", "sft", *args, "rewards=[format,my_rewards:short]"], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = metrics(tmp_path / "o" / "metrics.jsonl")
    assert rows[-1]["eval/short"] == 1.0 and "eval/format" in rows[-1]
    bad = subprocess.run(["r1-ref", "sft", *args, "rewards=[format,my_rewards:long]"], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert bad.returncode != 0 and "module 'my_rewards' has no attribute 'long'" in bad.stderr and "Traceback" not in bad.stderr
