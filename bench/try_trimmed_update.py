"""Measure the proposed r1_ref update fix without editing r1_ref: length-sorted micro-batches, each sliced to its own
longest completion (instead of padding every micro-batch to the batch's longest completion).

    python bench/try_trimmed_update.py [--steps 5] [--trim]

Same settings as bench/bench_vs_trl.py. Prints the median step split, completions/s and peak RSS; run once with and once
without --trim (each in its own process) to compare. The loss is the same: padding positions have zero weight and the
`dapo` normalisation uses the whole batch's token count.
"""
import argparse, resource, statistics, sys
from pathlib import Path
import torch
import r1_ref.trainer as T
from r1_ref.grpo import grpo_loss

ROOT = Path(__file__).resolve().parents[1]


def trimmed_update(self, batch, adv, old_logps, ref_logps):
    "r1_ref's update (mu passes, mini/micro-batches), with sorted rows and per-micro-batch trimming."
    cfg, n = self.cfg, len(adv)
    mb = min(cfg.mini_batch_size or n, n)
    P, cm = batch["P"], batch["completion_mask"]
    sums, ntok, gnorms, losses = {}, 0.0, [], []
    for _ in range(cfg.mu):
        for s in range(0, n, mb):
            rows = torch.arange(s, min(s + mb, n))
            rows = rows[torch.argsort(cm[rows].sum(1))]          # short completions together
            n_tokens, mb_loss = cm[rows].sum(), 0.0
            for m in range(0, len(rows), cfg.micro_batch_size):
                r = rows[m:m + cfg.micro_batch_size]
                C = max(1, int(cm[r].sum(1).max()))
                sub = {k: batch[k][:, :P + C] for k in ("input_ids", "attention_mask", "position_ids")} | {"P": P}
                mask = cm[r, :C]
                logps, ent = T.token_logps(self.model, sub, cfg.temperature, r, with_entropy=True)
                old = logps.detach() if old_logps is None else old_logps[r, :C]
                loss, st = grpo_loss(logps, old, adv[r], mask, None if ref_logps is None else ref_logps[r, :C],
                                     beta=cfg.beta, epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high, loss_type=cfg.loss_type,
                                     max_completion_length=cfg.max_new_tokens, num_seqs=len(rows), num_tokens=n_tokens)
                self.acc.backward(loss)
                mb_loss += loss.item()
                k = float(mask.sum())
                st = {**st, "entropy": (ent * mask).sum() / max(k, 1)}
                for key, v in st.items(): sums[key] = sums.get(key, 0.0) + float(v) * k
                ntok += k
            losses.append(mb_loss)
            gnorms.append(float(self.acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)))
            self.opt.step(); self.opt.zero_grad(set_to_none=True)
    self.sched.step()
    return {**{k: v / max(ntok, 1) for k, v in sums.items()}, "loss": sum(losses) / len(losses), "grad_norm": sum(gnorms) / len(gnorms)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--trim", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    if a.trim: T.GRPOTrainer.update = trimmed_update
    cfg = T.load_config(overrides=["output_dir=runs/bench-vs-trl", "progress=false", f"toy_cache={ROOT / 'runs'}", "group_size=8",
                                   "batch_size=128", "micro_batch_size=64", "max_new_tokens=64", "lr=0.0001", "beta=0",
                                   "epsilon=0.2", "loss_type=dapo", "toy_eval=100", "steps=10"])
    tr = T.GRPOTrainer(cfg)
    tr.train_step()
    ms = [tr.train_step() for _ in range(a.steps)]
    med = lambda k: statistics.median(m[k] for m in ms)
    print(f"{'trimmed' if a.trim else 'baseline'}: step {med('time_step'):.2f}s | rollout {med('time_rollout'):.2f}s | "
          f"update {med('time_update'):.2f}s | completions/s {cfg.batch_size / med('time_step'):.1f} | loss {[round(m['loss'], 4) for m in ms]} | "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
