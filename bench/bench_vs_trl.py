"""Benchmark r1_ref's GRPO trainer against TRL's `GRPOTrainer` on the toy world (CPU).

    python bench/bench_vs_trl.py [--repeats 3] [--steps 3] [--tta-repeats 1] [--tta-cap 60] [--target 0.9]
                                 [--eval-every 5] [--with-generate] [--json out.json] [--plot docs/benchmarks.png]
    python bench/bench_vs_trl.py --merge a.json b.json [--plot docs/benchmarks.png]     # pool saved results

Both trainers get the same toy base model (runs/base), tokenizer, training/held-out data, reward (format + exact
accuracy), G=8, 128 completions per step (16 questions), micro-batch 64 (TRL: per-device batch 64 x gradient
accumulation 2 = one optimizer step per generation batch), max 64 new tokens, T=1.0, top-k off, top-p 1.0, lr 1e-4
(5 warm-up steps then cosine to 0.1 lr), beta 0, epsilon 0.2, loss "dapo", fp32, no vLLM. Generation stops at
`<eos>` or `</answer>` in both, both without gradient checkpointing (TRL's default is on; --trl-gradient-checkpointing keeps it) (TRL: `</answer>`'s id is added to the model's generation_config.eos_token_id, which
TRL reads as its EOS ids, so its completion mask also ends there).

Every measurement runs in its own subprocess (so peak RSS is per trainer), alternating r1_ref, TRL, r1_ref, TRL...;
the parent collects the JSON each worker prints and reports medians and r1_ref/TRL ratios.

* speed: one warm-up step, then --steps timed steps: completions/s, tokens/s (completion tokens), step time.
* time-to-accuracy: train until the held-out accuracy (the same 100 eval prompts, the same evaluation function for
  both models: r1_ref's HFEngine at T=0.6, top-p 0.95, 1 sample, exact match) reaches --target, evaluated every
  --eval-every steps, or --tta-cap steps. Reported time is training time only (evaluation time is excluded).
  Time-to-accuracy repeat i uses seed --seed + i for both trainers (RL curves differ more between seeds than timings).
"""
import argparse, json, os, resource, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "runs" / "base"
G, BATCH, MICRO, MAX_NEW, LR, N_TRAIN, N_EVAL = 8, 128, 64, 64, 1e-4, 2000, 100
GEN = "r1_ref_generate"   # r1_ref with engine=hf_generate: the same trainer, rollouts from 🤗 generate


def peak_rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_evaluator(tok, eval_rows):
    "Held-out accuracy of a model: same prompts, sampling and scoring for both trainers."
    import torch
    from r1_ref.rollout import HFEngine
    from r1_ref.rewards import accuracy_reward
    from r1_ref.toy import TOY_TEMPLATE
    prompts = [TOY_TEMPLATE.format(prompt=r["prompt"]) for r in eval_rows]
    answers = [r["answer"] for r in eval_rows]
    def evaluate(model, seed=1234):
        rng = torch.get_rng_state(); torch.manual_seed(seed)
        ro = HFEngine(model, tok, MAX_NEW, 0.6, 0.95).generate(prompts, 1)
        torch.set_rng_state(rng)
        acc = accuracy_reward(ro.completions, answer=answers, exact=True)
        return sum(a or 0.0 for a in acc) / len(acc)
    return evaluate


# ---------------------------------------------------------------- r1_ref worker
def run_r1(mode, a, engine="hf"):
    import torch
    from r1_ref.trainer import GRPOTrainer, load_config
    steps = a.tta_cap if mode == "tta" else a.steps + 1
    cfg = load_config(overrides=["output_dir=runs/bench-vs-trl", "progress=false", f"toy_cache={ROOT / 'runs'}",
                                 f"group_size={G}", f"batch_size={BATCH}", f"micro_batch_size={MICRO}",
                                 f"max_new_tokens={MAX_NEW}", f"lr={LR}", "beta=0", "epsilon=0.2", "loss_type=dapo",
                                 "temperature=1.0", "top_p=1.0", f"steps={steps}", "warmup_steps=5",
                                 f"toy_train={N_TRAIN}", f"toy_eval={N_EVAL}", f"seed={a.seed}", f"engine={engine}"])
    tr = GRPOTrainer(cfg)
    evaluate = make_evaluator(tr.tok, tr.eval_rows[:N_EVAL])
    rows, curve, t_train = [], [], 0.0
    if mode == "tta": curve.append((0, 0.0, evaluate(tr.policy)))
    for s in range(1, steps + 1):
        m = tr.train_step()
        t_train += m["time_step"]
        rows.append({k: m[k] for k in ("time_step", "time_rollout", "time_reward", "time_logps", "time_update", "completion_len", "reward")})
        if mode == "tta" and s % a.eval_every == 0:
            acc = evaluate(tr.policy); curve.append((s, t_train, acc))
            print(f"[r1_ref] step {s} train {t_train:.0f}s eval acc {acc:.2f}", file=sys.stderr, flush=True)
            if acc >= a.target: break
    return rows, curve


# ---------------------------------------------------------------- TRL worker
def run_trl(mode, a):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from r1_ref.rewards import accuracy_reward, format_reward as _fmt
    from r1_ref.toy import TOY_TEMPLATE, toy_datasets
    tok = AutoTokenizer.from_pretrained(BASE)
    model = AutoModelForCausalLM.from_pretrained(BASE)
    stop = tok.convert_tokens_to_ids("</answer>") if "</answer>" in tok.get_vocab() else tok.encode("</answer>", add_special_tokens=False)
    assert isinstance(stop, int) or len(stop) == 1, "</answer> is not one token"
    stop = stop if isinstance(stop, int) else stop[0]
    model.generation_config.eos_token_id = [tok.eos_token_id, stop]   # TRL takes its EOS ids from here
    tr_ds, ev_ds = toy_datasets(N_TRAIN, N_EVAL, 4, a.seed)
    train = Dataset.from_dict({"prompt": [TOY_TEMPLATE.format(prompt=p) for p in tr_ds["prompt"]], "answer": list(tr_ds["answer"])})
    eval_rows = [{"prompt": p, "answer": ans} for p, ans in zip(ev_ds["prompt"], ev_ds["answer"])][:N_EVAL]
    evaluate = make_evaluator(tok, eval_rows)

    def format_reward(completions, **kw): return _fmt(completions)
    def accuracy(completions, answer, **kw): return accuracy_reward(completions, answer=answer, exact=True)

    steps = a.tta_cap if mode == "tta" else a.steps + 1
    args = GRPOConfig(output_dir=str(ROOT / "runs" / "bench-vs-trl-trl"), use_cpu=True, bf16=False, fp16=False,
                      per_device_train_batch_size=MICRO, gradient_accumulation_steps=BATCH // MICRO,
                      num_generations=G, max_completion_length=MAX_NEW, temperature=1.0, top_p=1.0, top_k=0,
                      learning_rate=LR, lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1},
                      warmup_steps=5, weight_decay=0.0, max_grad_norm=1.0, beta=0.0, epsilon=0.2, loss_type="dapo",
                      num_iterations=1, scale_rewards="group", max_steps=steps, logging_steps=1, save_strategy="no",
                      report_to="none", seed=a.seed, disable_tqdm=True, dataloader_num_workers=0,
                      gradient_checkpointing=a.trl_gradient_checkpointing)  # TRL defaults to True; r1_ref runs without
    rows, curve, state = [], [], {"t0": None, "train": 0.0}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, st, control, **kw): state["t0"] = time.perf_counter()
        def on_step_end(self, args, st, control, model=None, **kw):
            dt = time.perf_counter() - state["t0"]; state["train"] += dt
            rows.append({"time_step": dt})
            if mode == "tta" and st.global_step % a.eval_every == 0:
                acc = evaluate(model); curve.append((st.global_step, state["train"], acc))
                print(f"[trl] step {st.global_step} train {state['train']:.0f}s eval acc {acc:.2f}", file=sys.stderr, flush=True)
                if acc >= a.target: control.should_training_stop = True
        def on_log(self, args, st, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs and rows and "completion_len" not in rows[-1]:
                rows[-1]["completion_len"] = logs["completions/mean_length"]; rows[-1]["reward"] = logs.get("reward")

    trainer = GRPOTrainer(model=model, reward_funcs=[format_reward, accuracy], args=args, train_dataset=train,
                          processing_class=tok, callbacks=[Clock()])
    if mode == "tta": curve.append((0, 0.0, evaluate(trainer.model)))
    trainer.train()
    return rows, curve


def worker(impl, mode, a):
    import torch
    torch.set_num_threads(a.threads)
    rows, curve = run_trl(mode, a) if impl == "trl" else run_r1(mode, a, "hf_generate" if impl == GEN else "hf")
    out = {"impl": impl, "mode": mode, "seed": a.seed, "peak_rss_mb": peak_rss_mb(), "curve": curve, "steps_run": len(rows)}
    if mode == "speed":
        timed = rows[1:]                                    # drop the warm-up step
        med = lambda k: statistics.median(r[k] for r in timed if r.get(k) is not None) if any(r.get(k) is not None for r in timed) else None
        step = med("time_step"); clen = med("completion_len")
        out |= {"time_step": step, "completions_per_s": BATCH / step, "completion_len": clen,
                "tokens_per_s": None if clen is None else BATCH * clen / step,
                **{k: med(k) for k in ("time_rollout", "time_reward", "time_logps", "time_update")}}
    else:
        hit = next((c for c in curve if c[2] >= a.target), None)
        out |= {"reached": hit is not None, "tta_s": hit[1] if hit else None, "tta_steps": hit[0] if hit else None,
                "final_acc": curve[-1][2], "best_acc": max(c[2] for c in curve)}
    print("RESULT " + json.dumps(out), flush=True)


# ---------------------------------------------------------------- parent
def spawn(impl, mode, a, seed=None):
    cmd = [sys.executable, __file__, "--worker", impl, "--mode", mode, "--steps", str(a.steps), "--tta-cap", str(a.tta_cap),
           "--target", str(a.target), "--eval-every", str(a.eval_every), "--threads", str(a.threads), "--seed", str(a.seed if seed is None else seed)] + (["--trl-gradient-checkpointing"] if a.trl_gradient_checkpointing else [])
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    res = [json.loads(l[7:]) for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    if p.returncode or not res: sys.exit(f"{impl} {mode} worker failed (rc {p.returncode}):\n{p.stderr[-4000:]}")
    print(f"  {impl:6s} {mode:5s} done in {time.perf_counter() - t:.0f}s", flush=True)
    return res[0]


def table(results, tta):
    med = lambda impl, k: (lambda v: statistics.median(v) if v else None)([r[k] for r in results if r["impl"] == impl and r.get(k) is not None])
    fmt = lambda v, f: "n/a" if v is None else format(v, f)
    lines = ["| metric (median) | r1_ref | TRL | r1_ref/TRL | goal |", "|---|---:|---:|---:|---|"]
    def row(name, k, f, goal, src=results):
        x, y = (lambda i: (lambda v: statistics.median(v) if v else None)([r[k] for r in src if r["impl"] == i and r.get(k) is not None]))("r1_ref"), \
               (lambda v: statistics.median(v) if v else None)([r[k] for r in src if r["impl"] == "trl" and r.get(k) is not None])
        lines.append(f"| {name} | {fmt(x, f)} | {fmt(y, f)} | {fmt(x / y if x and y else None, '.2f')} | {goal} |")
    row("completions/s", "completions_per_s", ".1f", "≥ 1.5")
    row("tokens/s (completion tokens)", "tokens_per_s", ".0f", "")
    row("mean completion length (tokens)", "completion_len", ".1f", "")
    row("step time (s)", "time_step", ".2f", "")
    row("peak RSS, speed run (MB)", "peak_rss_mb", ".0f", "≤ 1.0")
    if tta:
        n = lambda i: f"{sum(r['reached'] for r in tta if r['impl'] == i)}/{sum(r['impl'] == i for r in tta)}"
        lines.append(f"| runs reaching the target | {n('r1_ref')} | {n('trl')} |  |  |")
        row("time to target accuracy (s, training only; runs that reached it)", "tta_s", ".0f", "≤ 0.5", tta)
        row("steps to target accuracy", "tta_steps", ".0f", "", tta)
        row("best held-out accuracy", "best_acc", ".2f", "same", tta)
        row("peak RSS, accuracy run (MB)", "peak_rss_mb", ".0f", "≤ 1.0", tta)
    return "\n".join(lines)


def plot(speed, tta, path, tta_target=0.9):
    import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2 if tta else 1, figsize=(11 if tta else 5.5, 4)); ax = ax if tta else [ax]
    impls = [i for i in ("r1_ref", GEN, "trl") if any(r["impl"] == i for r in speed)]
    vals = [[r["completions_per_s"] for r in speed if r["impl"] == i] for i in impls]
    ax[0].bar(impls, [statistics.median(v) for v in vals], color=[{"r1_ref": "tab:blue", GEN: "lightsteelblue", "trl": "tab:orange"}[i] for i in impls])
    for k, v in enumerate(vals): ax[0].scatter([k] * len(v), v, color="k", s=12, zorder=3)
    ax[0].set_ylabel("completions/s (median; dots: repeats)"); ax[0].set_title("GRPO step throughput, toy world, CPU")
    if tta:
        labelled = set()
        for r in tta:
            c = r["curve"]; ax[1].plot([x[1] for x in c], [x[2] for x in c], "o-", color="tab:blue" if r["impl"] == "r1_ref" else "tab:orange",
                                       label=None if r["impl"] in labelled else r["impl"], alpha=0.7, ms=3)
            labelled.add(r["impl"])
        ax[1].axhline(tta_target, color="gray", ls=":", lw=1)
        ax[1].set_xlabel("training time (s, evaluation excluded)"); ax[1].set_ylabel("held-out accuracy (100 prompts)")
        ax[1].set_title("time to accuracy"); ax[1].legend()
    fig.tight_layout(); fig.savefig(path, dpi=110); print(f"plot: {path}")


def merge(a):
    "Pool saved results (e.g. time-to-accuracy seeds run on different days) into one table and plot."
    runs = [json.loads(Path(p).read_text()) for p in a.merge]
    speed, tta = [r for d in runs for r in d["speed"]], [r for d in runs for r in d["tta"]]
    for p, d in zip(a.merge, runs): print(f"{p}: {d['env']}")
    print(f"\npooled: {len(speed)} speed runs, {len(tta)} time-to-accuracy runs (target {a.target})\n")
    print(table(speed, tta))
    if a.plot: plot(speed, tta, a.plot, a.target)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--repeats", type=int, default=3, help="speed runs per trainer (alternating)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per speed run (after one warm-up step)")
    ap.add_argument("--tta-repeats", type=int, default=1, help="time-to-accuracy runs per trainer (0: skip)")
    ap.add_argument("--tta-cap", type=int, default=60, help="step cap of a time-to-accuracy run")
    ap.add_argument("--target", type=float, default=0.9, help="target held-out accuracy")
    ap.add_argument("--eval-every", type=int, default=5, help="evaluate every N steps in time-to-accuracy runs")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in each worker")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trl-gradient-checkpointing", action="store_true",
                    help="keep TRL's default gradient checkpointing (r1_ref runs without; off by default for the same settings)")
    ap.add_argument("--with-generate", action="store_true",
                    help=f"also time r1_ref with the 🤗 generate engine (engine=hf_generate) as '{GEN}', alternating with the others")
    ap.add_argument("--json", default=None, help="write all worker results here")
    ap.add_argument("--plot", default=None, help="write a PNG plot here")
    ap.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                    help="run nothing: pool the results of earlier --json files, print their table and draw --plot")
    ap.add_argument("--worker", choices=["r1_ref", "trl", GEN], help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=["speed", "tta"], default="speed", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: return worker(a.worker, a.mode, a)
    if a.merge: return merge(a)
    import platform, torch, transformers, trl, accelerate
    env = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {a.threads} torch threads; python {platform.python_version()}, "
           f"torch {torch.__version__}, transformers {transformers.__version__}, accelerate {accelerate.__version__}, trl {trl.__version__}")
    print(env)
    speed, tta = [], []
    for i in range(a.repeats):
        for impl in ("r1_ref", "trl", GEN) if a.with_generate else ("r1_ref", "trl"): speed.append(spawn(impl, "speed", a))
    for i in range(a.tta_repeats):
        for impl in ("r1_ref", "trl"): tta.append(spawn(impl, "tta", a, seed=a.seed + i))   # repeat i: seed + i (data, init of sampling)
    print(f"\n{a.repeats} speed repeats x {a.steps} timed steps; {a.tta_repeats} time-to-accuracy repeats "
          f"(target {a.target}, cap {a.tta_cap} steps, eval every {a.eval_every})\n")
    print(table(speed, tta))
    r1 = [r for r in speed if r["impl"] == "r1_ref"]
    if r1 and r1[0].get("time_rollout") is not None:
        m = lambda k: statistics.median(r[k] for r in r1)
        print(f"\nr1_ref step split (median): rollout {m('time_rollout'):.2f}s | reward {m('time_reward'):.2f}s | log-probs {m('time_logps'):.2f}s | update {m('time_update'):.2f}s")
    gen = [r for r in speed if r["impl"] == GEN]
    if gen:
        m = lambda k, rs: statistics.median(r[k] for r in rs)
        print(f"r1_ref with the generate engine (engine=hf_generate), medians: completions/s {m('completions_per_s', gen):.1f} "
              f"(r1_ref/that {m('completions_per_s', r1) / m('completions_per_s', gen):.2f}) | step {m('time_step', gen):.2f}s | "
              f"rollout {m('time_rollout', gen):.2f}s | update {m('time_update', gen):.2f}s | peak RSS {m('peak_rss_mb', gen):.0f} MB")
    if a.json: Path(a.json).write_text(json.dumps({"env": env, "speed": speed, "tta": tta}, indent=1))
    if a.plot: plot(speed, tta, a.plot, a.target)


if __name__ == "__main__":
    main()
