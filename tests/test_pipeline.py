"Chapter 8's pipeline end to end with tiny step counts, resumed without re-running finished stages."
import json, subprocess
from pathlib import Path

TINY = ["toy_digits=1", "toy_train=60", "toy_eval=16", "pretrain_steps=150", "group_size=4", "batch_size=16", "eval_samples=2",
        "eval_steps=0", "zero_steps=2", "cold_start_examples=32", "cold_start_epochs=1", "rl1_steps=2", "rs_samples=2",
        "rl2_steps=2", "distill=true", "progress=false",
        "sft_lr=1e-3"]   # a 150-step base has no arithmetic to lose; at 1e-4 one cold-start step teaches no format and stage 3 finds no trace
STAGES = ["base", "r1-zero", "r1-cold-start", "r1-rl1", "r1-sft", "r1", "distill", "student-rl"]


def test_pipeline_end_to_end_then_resume(tmp_path):
    out = tmp_path / "pipeline"
    res = subprocess.run(["r1-ref", "pipeline", *TINY, f"output_dir={out}"], capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    for s in STAGES: assert (out / s / "stage.json").exists(), s
    report = (out / "report" / "report.md").read_text()
    for label in ("R1-Zero", "R1 cold start", "R1 (stage 4)", "student, distilled", "student, GRPO"): assert label in report
    results = json.loads((out / "report" / "results.json").read_text())
    assert [r["model"] for r in results] == STAGES
    assert all(0 <= r["pass@1"] <= 1 for r in results)
    assert all(r["language"] is None or 0 <= r["language"] <= 1 for r in results)   # None: no response that thinks
    assert (out / "report" / "rl_curves.png").stat().st_size > 5000 and (out / "report" / "comparison.png").stat().st_size > 5000
    zero = [json.loads(l) for l in (out / "r1-zero" / "metrics.jsonl").read_text().splitlines()]
    assert "reward/reflection" in zero[-1] and "reward/toy_language" in zero[-1]     # monitors logged, weight 0
    stamps = {s: (out / s / "stage.json").stat().st_mtime for s in STAGES}
    again = subprocess.run(["r1-ref", "pipeline", *TINY, f"output_dir={out}", "distill=false"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done earlier") == 6 and "running" not in again.stdout
    assert {s: (out / s / "stage.json").stat().st_mtime for s in STAGES} == stamps


def test_bad_reward_model_names_the_key(tmp_path):
    res = subprocess.run(["r1-ref", "pipeline", "reward_model=nowhere:nothing", "pretrain_steps=0", f"output_dir={tmp_path}"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode != 0 and "'reward_model'" in res.stderr, res.stderr[-2000:]
