"""Time GRPO steps of r1_ref on the toy world: completions/s and tokens/s, with the rollout / reward / update split.

    python bench/bench_grpo_step.py [--steps 5] [--batch-size 128] [--group-size 8] [key=value ...]

Builds (or reuses) the toy base model in runs/, runs one warm-up step and then --steps timed steps, and prints
medians. Keep the settings fixed when comparing with other implementations (bench/ for TRL comes later).
"""
import argparse, json, platform, resource, statistics, time
import torch
from r1_ref.trainer import GRPOTrainer, load_config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    cfg = load_config(overrides=["output_dir=runs/bench", "progress=false", "eval_split=null", "toy_eval=0", *a.overrides])
    tr = GRPOTrainer(cfg)
    tr.train_step()  # warm-up
    rows = []
    for _ in range(a.steps):
        m = tr.train_step()
        m["tokens"] = m["completion_len"] * cfg.batch_size
        rows.append(m)
    med = lambda k: statistics.median(r[k] for r in rows)
    step = med("time_step")
    print(f"r1_ref GRPO step on {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batch {cfg.batch_size} = {cfg.batch_size // cfg.group_size} questions x G={cfg.group_size}")
    print(f"median over {a.steps} steps: step {step:.2f} s | rollout {med('time_rollout'):.2f} s | reward {med('time_reward'):.2f} s | old/ref log-probs {med('time_logps'):.2f} s"
          f" | update {med('time_update'):.2f} s")
    print(f"completions/s {cfg.batch_size / step:.1f} | tokens/s {med('tokens') / step:.0f} | mean completion {med('completion_len'):.1f} tokens"
          f" | peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
