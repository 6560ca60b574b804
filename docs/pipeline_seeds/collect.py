"""Collect one `r1-ref pipeline` run into docs/pipeline_seeds/seed{S}_threads{T}.json (read by chapter 8 and the README).

    python docs/pipeline_seeds/collect.py OUTPUT_DIR --seed S --threads T --commit SHA --command "..." [--wall-s N]

Per stage: the report's numbers (report/results.json), the stage's time (stage.json), and the accuracy among
thinking answers, computed from the report's samples (report/<stage>/samples.jsonl)."""
import argparse, json, platform
from pathlib import Path

def think_acc(samples:Path):
    "Share of correct answers among the responses that close a thinking part."
    recs = [json.loads(l) for l in samples.read_text().splitlines() if l.strip()]
    th = [bool(r["correct"]) for r in recs if "</think>" in r["completion"]]
    return sum(th) / len(th) if th else None

def collect(out:Path, **meta) -> dict:
    rep = out / "report"
    stages = []
    for r in json.loads((rep / "results.json").read_text()):
        rec = json.loads((out / r["model"] / "stage.json").read_text())
        stages.append({**r, "think_acc": think_acc(rep / r["model"] / "samples.jsonl"), "seconds": rec["seconds"]})
    return {**meta, "stages": stages}

if __name__ == "__main__":
    import torch
    p = argparse.ArgumentParser()
    p.add_argument("output_dir"); p.add_argument("--seed", type=int, required=True); p.add_argument("--threads", type=int, required=True)
    p.add_argument("--commit", required=True); p.add_argument("--command", required=True); p.add_argument("--wall-s", type=float)
    p.add_argument("--note", default="")
    a = p.parse_args()
    d = collect(Path(a.output_dir), seed=a.seed, threads=a.threads, commit=a.commit, command=a.command, wall_s=a.wall_s,
                torch=torch.__version__, python=platform.python_version(), machine="2-core CPU shared with other jobs", note=a.note)
    dest = Path(__file__).parent / f"seed{a.seed}_threads{a.threads}.json"
    dest.write_text(json.dumps(d, indent=1) + "\n"); print(dest)
