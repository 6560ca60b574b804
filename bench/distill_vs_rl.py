"""Issue 17, item 4: does distillation beat RL on a smaller student? Prints measurements and writes them as JSON.

    python bench/distill_vs_rl.py [--think 0.0] [--sft-lr 1e-3] [--sft-epochs 6] [--out runs/distill-vs-rl]

Teacher: chapter 4's GRPO run (runs/toy-r1-zero, 1.6M parameters) and its traces (runs/toy-distill/traces.jsonl,
`r1-ref distill`). Student: a toy Qwen2 a quarter of the teacher's size (4 layers, width 96), pretrained from scratch
on the toy corpus with a share `--think` of scratchpad documents (the teacher's base had 0.3; 0 means the student has
never seen a scratchpad, so its own samples are almost never right). Arms, evaluated the same way (held-out pass@1,
T=0.6, top-p 0.95, 4 samples per question, 200 questions):
  sft   SFT on the teacher's traces (R1's distillation), `--sft-epochs` at lr `--sft-lr` — also the capacity check;
  grpo  GRPO from the student's base (chapter 4's preset; `--format-weight` sets the format reward's weight) for the
        same wall-clock time as the SFT run;
  both  GRPO after the SFT, again for that time.
"""
import argparse, json, time
from dataclasses import asdict
from pathlib import Path
from r1_ref.toy import toy_base_model
from r1_ref.distill import SFTConfig, SFTTrainer
from r1_ref.trainer import GRPOConfig, GRPOTrainer, latest_checkpoint

STUDENT = dict(hidden_size=96, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2, intermediate_size=256)
KEYS = ("eval/accuracy", "eval/format", "eval/think_frac", "eval/accuracy_thinking", "eval/completion_len")

def grpo_for(model, out, budget, format_weight=1.0, lr=1e-4):
    "GRPO (chapter 4's preset) from `model` until `budget` seconds have passed; first and last evaluation."
    g = GRPOTrainer(GRPOConfig(model=str(model), output_dir=str(out), eval_samples=4, progress=False, steps=10_000,
                               reward_weights=[format_weight, 1.0], lr=lr))
    log, t0 = [{"step": 0, **g.evaluate()}], time.time()
    while time.time() - t0 < budget: log.append(g.train_step())
    log[-1] |= g.evaluate()
    return log, time.time() - t0

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--think", type=float, default=0.0); p.add_argument("--sft-lr", type=float, default=1e-3)
    p.add_argument("--sft-epochs", type=float, default=6.0); p.add_argument("--out", default="runs/distill-vs-rl")
    p.add_argument("--pretrain-steps", type=int, default=1000)
    p.add_argument("--format-weight", type=float, default=1.0, help="GRPO's format reward weight (chapter 8: 0.1)")
    p.add_argument("--grpo-lr", type=float, default=1e-4, help="GRPO's learning rate (chapter 4: 1e-4)")
    a = p.parse_args()
    out = Path(a.out) / f"think{a.think}"
    mix = ((1 - a.think) / 2, (1 - a.think) / 2, a.think)
    tag = f"fw{a.format_weight}-lr{a.grpo_lr}"             # the GRPO settings name this run's directories
    t0 = time.time()
    base = toy_base_model(out, steps=a.pretrain_steps, mix=mix, name="student-base", model_kwargs=STUDENT,
                          progress=False)
    t_base = time.time() - t0
    from transformers import AutoModelForCausalLM
    n_params = lambda path: sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
    cfg = SFTConfig(model=str(base), teacher="runs/toy-r1-zero", sft_data="runs/toy-distill/traces.jsonl",
                    output_dir=str(out / f"sft-{tag}"), lr=a.sft_lr, epochs=a.sft_epochs, eval_samples=4,
                    progress=False)
    t0 = time.time()
    sft_log = SFTTrainer(cfg).train()
    t_sft = time.time() - t0                                 # every other arm gets this much wall-clock time
    grpo_log, t_grpo = grpo_for(base, out / f"grpo-{tag}", t_sft, a.format_weight, a.grpo_lr)
    both_log, t_both = grpo_for(latest_checkpoint(out / f"sft-{tag}"), out / f"sft-grpo-{tag}", t_sft,
                                a.format_weight, a.grpo_lr)
    pick = lambda m: {k: m.get(k) for k in KEYS}
    args = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items())
    res = dict(command=f"python bench/distill_vs_rl.py {args}", student_params=n_params(base),
               teacher_params=n_params(latest_checkpoint("runs/toy-r1-zero")), think_share_in_pretraining=a.think,
               pretrain_seconds=round(t_base), student_base=pick(sft_log[0]),
               sft=dict(seconds=round(t_sft), **pick(sft_log[-1])),
               grpo=dict(seconds=round(t_grpo), steps=len(grpo_log) - 1, **pick(grpo_log[-1])),
               sft_then_grpo=dict(seconds=round(t_both), steps=len(both_log) - 1, start=pick(both_log[0]),
                                  **pick(both_log[-1])))
    (out / f"result-{tag}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))

if __name__ == "__main__": main()
