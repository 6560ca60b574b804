"""Profile r1_ref GRPO steps on the toy world (same settings as bench/bench_vs_trl.py): step split, cProfile and torch.profiler.

    python bench/profile_r1_step.py [--steps 3] [--top 25]

One warm-up step, then --steps profiled steps. Prints the rollout / reward+adv / update split, the top functions by
cumulative and own time (cProfile), the top torch ops (torch.profiler, CPU time) and the peak RSS after each phase.
"""
import argparse, cProfile, io, pstats, resource, statistics, sys
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"peak RSS after import torch: {rss():.0f} MB")
    from r1_ref.trainer import GRPOTrainer, load_config
    print(f"peak RSS after import r1_ref.trainer: {rss():.0f} MB")
    cfg = load_config(overrides=["output_dir=runs/bench-vs-trl", "progress=false", f"toy_cache={ROOT / 'runs'}", "group_size=8",
                                 "batch_size=128", "micro_batch_size=64", "max_new_tokens=64", "lr=0.0001", "beta=0", "epsilon=0.2",
                                 "loss_type=dapo", "toy_eval=100", "steps=10"])
    tr = GRPOTrainer(cfg)
    print(f"peak RSS after GRPOTrainer(cfg): {rss():.0f} MB")
    tr.train_step()
    print(f"peak RSS after 1 step: {rss():.0f} MB")
    prof = cProfile.Profile(); ms = []
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as tp:
        prof.enable()
        for _ in range(a.steps): ms.append(tr.train_step())
        prof.disable()
    med = lambda k: statistics.median(m[k] for m in ms)
    print(f"\nmedian of {a.steps} steps (under the profilers): step {med('time_step'):.2f}s | rollout {med('time_rollout'):.2f}s | "
          f"reward {med('time_reward'):.2f}s | log-probs {med('time_logps'):.2f}s | update {med('time_update'):.2f}s | completion_len {med('completion_len'):.1f} "
          f"(max {max(m['completion_len_max'] for m in ms)})")
    for key in ("cumulative", "tottime"):
        s = io.StringIO(); pstats.Stats(prof, stream=s).sort_stats(key).print_stats(a.top)
        print(f"\n=== cProfile by {key} ===\n" + "\n".join(s.getvalue().splitlines()[6:]))
    print("\n=== torch.profiler, top ops by self CPU time ===")
    print(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.top))
    print(f"peak RSS at the end: {rss():.0f} MB")


if __name__ == "__main__":
    main()
