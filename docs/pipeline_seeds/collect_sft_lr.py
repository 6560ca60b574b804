"""Collect the cold-start SFT ablation (lr x batching) into docs/pipeline_seeds/sft_lr.json (read by chapter 8).

Each run is `r1-ref sft` of the seed-0 pipeline's base on its cold-start traces, with the pipeline's SFT settings
(3 epochs, batch 64, eval 200 held-out x 2 samples at T=0.6) and one of lr {1e-3, 1e-4} x group_by_length {true, false}:

    python docs/pipeline_seeds/collect_sft_lr.py ABL_DIR --commit SHA"""
import argparse, json
from pathlib import Path

KEYS = ("accuracy", "think_frac", "accuracy_thinking")
pick = lambda row: {k: row[f"eval/{k}"] for k in KEYS}

if __name__ == "__main__":
    p = argparse.ArgumentParser(); p.add_argument("abl_dir"); p.add_argument("--commit", required=True); a = p.parse_args()
    runs, base = [], None
    for d in sorted(Path(a.abl_dir).iterdir()):
        rows = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines() if l.strip()]
        cfg = json.loads(json.dumps(__import__("yaml").safe_load((d / "config.yaml").read_text())))
        base = base or pick(rows[0])
        runs.append({"lr": cfg["lr"], "group_by_length": cfg["group_by_length"], "steps": rows[-1]["step"], **pick(rows[-1])})
    runs.sort(key=lambda r: (-r["lr"], not r["group_by_length"]))
    cmd = ("r1-ref sft model=<seed-0 run>/base/model sft_data=<seed-0 run>/r1-cold-start/traces.jsonl teacher=null epochs=3 "
           "batch_size=64 micro_batch_size=64 eval_samples=2 seed=0 lr={1e-3,1e-4} group_by_length={true,false}")
    out = {"command": cmd, "commit": a.commit, "seed": 0, "threads": 1,
           "eval": "held-out 200 questions x 2 samples, T=0.6, top-p 0.95", "base": base, "runs": runs}
    dest = Path(__file__).parent / "sft_lr.json"; dest.write_text(json.dumps(out, indent=1) + "\n"); print(dest)
