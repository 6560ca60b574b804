"""An experiment toward issue 17: a toy world with a search structure (pair-sum), built to test whether RL on the
toy can show skill growth, length growth and a reflection that pays. It prints measurements; it asserts nothing.

    python bench/search_world.py NAME [--digits 1|2] [--pretrain-steps N] [--batch B] [--pack] [--rl-steps S]
                                      [--init BASE --lr LR]   # continue pretraining an earlier base

Task: a list of 4-5 distinct numbers and a target that exactly one pair sums to; the answer is that pair, in list order
("46+43"). Pretraining corpus (like the toy's): 20% bare answers, 20% tagged answers, 60% thinking traces that try
the pairs in order ("3+7=10 no 3+5=8 yes") with a patience of 1-3 trials, after which they commit to a random untried
pair — or, in 10% of traces, write "wait" and go on searching to the end (the rare behaviour RL could amplify).
The base is pretrained from scratch, evaluated (T=0.6, top-p 0.95, 200 held-out lists), trained with the toy GRPO
preset (configs/toy_r1_zero.yaml, max_new_tokens 220) and evaluated again: accuracy overall / among thinking answers,
think share, length, trials per answer, share of answers with "wait" and accuracy with and without it.
"""
import argparse, json, math, os, random, re, sys, time
from pathlib import Path
import torch
from datasets import Dataset
from r1_ref.toy import build_tokenizer, build_model, TOY_TEMPLATE

MIX = dict(plain=0.2, answer=0.2, think=0.6)

def search_problem(rng, digits=1, n_lo=4, n_hi=5):
    "A list of distinct numbers, a target, and the one pair (i, j), i < j, that sums to it."
    lo, hi = (1, 10) if digits == 1 else (10, 100)
    while True:
        xs = rng.sample(range(lo, hi), rng.randint(n_lo, n_hi))
        i, j = sorted(rng.sample(range(len(xs)), 2))
        t = xs[i] + xs[j]
        pairs = [(a, b) for a in range(len(xs)) for b in range(a + 1, len(xs))]
        if sum(xs[a] + xs[b] == t for a, b in pairs) == 1: return xs, t, (i, j)

def prompt_of(xs, t): return " ".join(map(str, xs)) + f" to {t}"
def answer_of(xs, ij): return f"{xs[ij[0]]}+{xs[ij[1]]}"

def search_trace(rng, xs, t, patience, wait):
    "Pairs tried in order; after `patience` misses commit to a random untried pair, unless `wait` goes on to the end."
    pairs = [(a, b) for a in range(len(xs)) for b in range(a + 1, len(xs))]
    steps = []
    for k, (a, b) in enumerate(pairs):
        if k == patience:
            if not wait: return " ".join(steps), answer_of(xs, rng.choice(pairs[k:]))
            steps.append("wait")
        s = xs[a] + xs[b]
        steps.append(f"{xs[a]}+{xs[b]}={s} " + ("yes" if s == t else "no"))
        if s == t: return " ".join(steps), answer_of(xs, (a, b))

def search_document(rng, digits=1, pmax=3, wait=0.1):
    "One pretraining document: template, a completion in a random style, <eos>."
    xs, t, ij = search_problem(rng, digits)
    style = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    if style == "plain": c = " " + answer_of(xs, ij)
    elif style == "answer": c = f"<answer>{answer_of(xs, ij)}</answer>"
    else:
        think, ans = search_trace(rng, xs, t, rng.randint(1, pmax), rng.random() < wait)
        c = f"<think>{think}</think><answer>{ans}</answer>"
    return TOY_TEMPLATE.format(prompt=prompt_of(xs, t)) + c + "<eos>"

def datasets(digits=1, n_train=2000, n_eval=200, seed=1000):
    "Disjoint train / held-out lists."
    rng, seen, rows = random.Random(seed), set(), []
    while len(rows) < n_train + n_eval:
        xs, t, ij = search_problem(rng, digits)
        if prompt_of(xs, t) in seen: continue
        seen.add(prompt_of(xs, t))
        rows.append({"prompt": prompt_of(xs, t), "answer": answer_of(xs, ij)})
    return Dataset.from_list(rows[:n_train]), Dataset.from_list(rows[n_train:])

def pretrain(out, digits, steps, bs, pack, lr=1e-3, warmup=100, seed=0, init=None):
    "Next-token pretraining from scratch or `init` (documents one per row, padded; or packed into rows of 256 tokens)."
    from transformers import AutoModelForCausalLM
    tok = build_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(init) if init else build_model(tok, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    rng, t0, buf = random.Random(seed), time.time(), []
    model.train()
    for s in range(steps):
        if pack:
            while len(buf) < bs * 256: buf += tok(search_document(rng, digits)).input_ids
            ids, buf = torch.tensor(buf[:bs * 256]).view(bs, 256), buf[bs * 256:]
            loss = model(input_ids=ids, labels=ids).loss
        else:
            batch = tok([search_document(rng, digits) for _ in range(bs)], padding=True, return_tensors="pt")
            loss = model(**batch, labels=batch.input_ids.masked_fill(batch.attention_mask == 0, -100)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); opt.zero_grad()
        if s % 100 == 0 or s == steps - 1: print(f"pretrain step {s} loss {loss.item():.3f} {time.time() - t0:.0f}s")
    model.save_pretrained(out); tok.save_pretrained(out)
    return time.time() - t0

def measure(path, rows, T=0.6):
    "Held-out pass@1 and the behaviours, one sample per list."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from r1_ref.rollout import HFEngine
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        ro = HFEngine(model, tok, 220, T, 0.95).generate([TOY_TEMPLATE.format(prompt=r["prompt"]) for r in rows], 1)
    recs = []
    for r, c, ids in zip(rows, ro.completions, ro.completion_ids):
        m = re.search(r"<answer>(.*?)</answer>", c)
        recs.append(dict(think="</think>" in c, acc=float(bool(m) and m.group(1).strip() == r["answer"]),
                         wait="wait" in c, len=len(ids), trials=c.count("=")))
    mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else None
    th = [x for x in recs if x["think"]]
    return dict(accuracy=mean([x["acc"] for x in recs]), think_frac=mean([x["think"] for x in recs]),
                accuracy_thinking=mean([x["acc"] for x in th]),
                accuracy_direct=mean([x["acc"] for x in recs if not x["think"]]),
                completion_len=mean([x["len"] for x in recs]),
                trials=mean([x["trials"] for x in th]), wait_frac=mean([x["wait"] for x in recs]),
                accuracy_wait=mean([x["acc"] for x in th if x["wait"]]),
                accuracy_no_wait=mean([x["acc"] for x in th if not x["wait"]])), ro.completions[:3]

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name"); p.add_argument("--digits", type=int, default=1)
    p.add_argument("--pretrain-steps", type=int, default=800); p.add_argument("--batch", type=int, default=48)
    p.add_argument("--pack", action="store_true"); p.add_argument("--rl-steps", type=int, default=60)
    p.add_argument("--out", default="runs/search")
    p.add_argument("--init", help="continue pretraining this base instead of starting from scratch")
    p.add_argument("--lr", type=float, default=1e-3)
    a = p.parse_args()
    base = Path(a.out) / a.name
    if not (base / "config.json").exists():
        seconds = pretrain(base, a.digits, a.pretrain_steps, a.batch, a.pack, a.lr, init=a.init,
                           seed=1 if a.init else 0)
        print(f"pretrained in {seconds:.0f} s")
    train, held_out = datasets(a.digits)
    m, ex = measure(base, list(held_out)); print("base", json.dumps(m), *ex, sep="\n  ")
    result = dict(command="python " + " ".join(sys.argv), base=m, base_examples=ex)
    (Path(a.out) / f"{a.name}-result.json").write_text(json.dumps(result, indent=1))
    if not a.rl_steps: return
    import r1_ref.toy
    from r1_ref.trainer import GRPOTrainer, load_config
    r1_ref.toy.toy_datasets = lambda *args, **kw: (train, held_out)     # the trainer's toy data, swapped for this task
    cfg = load_config("configs/toy_r1_zero.yaml", [f"model={base}", f"output_dir={base}-rl", f"steps={a.rl_steps}",
                                                   "max_new_tokens=220", "save_steps=1000", "export_dtype=float32"])
    t0 = time.time(); GRPOTrainer(cfg).train(); print(f"GRPO in {time.time() - t0:.0f} s")
    m, ex = measure(Path(cfg.output_dir) / "final", list(held_out)); print("after GRPO", json.dumps(m), *ex, sep="\n  ")
    result |= dict(after_grpo=m, after_examples=ex)
    (Path(a.out) / f"{a.name}-result.json").write_text(json.dumps(result, indent=1))   # metrics.jsonl: in {name}-rl/

if __name__ == "__main__": main()
