"The `r1-ref` command as a user runs it."
import json, subprocess, sys
import pytest


def test_demo_writes_metrics_and_curve(tmp_path):
    out = tmp_path / "demo"
    res = subprocess.run(["r1-ref", "demo", "--out", str(out), "--steps", "40"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 41))
    assert rows[-1]["p_correct"] > rows[0]["p_correct"]
    assert (out / "curve.png").stat().st_size > 1000


def test_unknown_command_fails_clearly():
    res = subprocess.run(["r1-ref", "fly"], capture_output=True, text=True)
    assert res.returncode != 0 and "invalid choice: 'fly'" in res.stderr


BAD_INPUT = [   # (arguments, exit code, what the one line must say); files are written by the test
    (["train", "grup_size=4"], 2, "unknown config key 'grup_size'"),
    (["train", "{bad_yaml}"], 2, "is not valid YAML at line 3"),
    (["sft", "model=toy"], 2, "needs sft_data="),
    (["sft", "sft_data={bad_rows}", "teacher=null", "toy_pretrain_steps=1", "toy_cache={tmp}/cache", "output_dir={tmp}/o"],
     1, "line 2 is not valid JSON"),
    (["distill", "teacher=/no/such/run", "toy_pretrain_steps=1", "toy_cache={tmp}/cache", "output_dir={tmp}/o2"],
     1, "'/no/such/run' does not exist"),
    (["pipeline", "zero_step=3", "output_dir={tmp}/p"], 2, "unknown config key 'zero_step'"),
    (["pipeline", "{bad_yaml}"], 2, "is not valid YAML"),
    (["eval", "/no/such/model", "--bench", "toy"], 1, "model path '/no/such/model' does not exist"),
    (["eval", "toy", "--bench", "gsm9k"], 1, "unknown benchmark 'gsm9k'"),
]

@pytest.mark.parametrize("args,code,message", BAD_INPUT, ids=[" ".join(a[:2]) for a, _, _ in BAD_INPUT])
def test_every_command_answers_bad_input_with_one_line(args, code, message, tmp_path):
    "Each CLI entry point: one line naming the bad thing, the exit code (2: a bad key or value), no traceback."
    import subprocess
    (tmp_path / "bad.yaml").write_text("lr: 1e-4\nsteps: [1, 2\n")
    (tmp_path / "rows.jsonl").write_text('{"prompt": "1+1", "completion": "<answer>2</answer>"}\nnot json\n')
    fill = dict(bad_yaml=tmp_path / "bad.yaml", bad_rows=tmp_path / "rows.jsonl", tmp=tmp_path)
    res = subprocess.run(["r1-ref", *(a.format(**fill) for a in args)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    errors = [l for l in res.stderr.splitlines() if " error: " in l]
    assert res.returncode == code and len(errors) == 1 and message in errors[0], (res.returncode, res.stderr[-1500:])
    assert "Traceback" not in res.stderr
