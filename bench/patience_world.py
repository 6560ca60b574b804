"""An experiment toward issue 17: the toy's addition world with *partial* worked solutions, built to test whether RL
shows skill growth, length growth and a reflection that pays. It prints measurements; it asserts nothing.

    python bench/patience_world.py NAME [--pretrain-steps N] [--keep W1,W2,W3,W4] [--retry R] [--rl-steps S]
                                        [--loss-type dapo|grpo|dr_grpo] [--seed S]
    python bench/patience_world.py --measure OUT.json MODEL_OR_RUN_DIR ...   # measure models, e.g. r1-ref train runs

Pretraining corpus: the toy's 4-digit sums in its three styles (40% bare, 30% tagged, 30% thinking), but a thinking
document works only the first K columns (K drawn with weights --keep), then writes a guess of the total ("so 6812")
that is right with probability --guess-right — a writer who stops early and adds the rest in the head. In a share
--retry of the partial documents the writer doubts the guess: "so 6812? wait", works the remaining columns and writes
the true total. The trainer runs the toy preset (configs/toy_r1_zero.yaml) from this base; the script measures the
base and the result on the 200 held-out sums (T=0.6, top-p 0.95): accuracy overall / among thinking answers, think
share, length, columns worked, share of answers with "wait", accuracy with and without it, and whether the guess
before each "wait" was in fact wrong (a "wait" after a right guess is a superficial check).
"""
import argparse, json, random, re, sys, time
from pathlib import Path
import torch
import r1_ref.toy as toy
from functools import partial
from r1_ref.toy import TOY_TEMPLATE

def measure(path, rows, T=0.6, max_new=96):
    "Held-out pass@1 and the behaviours, one sample per question."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from r1_ref.rollout import HFEngine
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        ro = HFEngine(model, tok, max_new, T, 0.95).generate([TOY_TEMPLATE.format(prompt=r["prompt"]) for r in rows], 1)
    recs = []
    for r, c, ids in zip(rows, ro.completions, ro.completion_ids):
        m = re.search(r"<answer>(.*?)</answer>", c)
        think = c.split("</think>")[0] if "</think>" in c else ""
        g = re.search(r"so (\d+)\? wait", think)
        recs.append(dict(think="</think>" in c, acc=float(bool(m) and m.group(1).strip() == r["answer"]),
                         wait="wait" in think, len=len(ids), cols=think.count("="),
                         guess_wrong=float(g.group(1) != r["answer"]) if g else None))
    mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else None
    th = [x for x in recs if x["think"]]
    waits = [x for x in th if x["wait"]]
    by_len = sorted(th, key=lambda x: x["len"])
    half = len(by_len) // 2
    return dict(accuracy=mean([x["acc"] for x in recs]), think_frac=mean([x["think"] for x in recs]),
                accuracy_thinking=mean([x["acc"] for x in th]),
                accuracy_direct=mean([x["acc"] for x in recs if not x["think"]]),
                completion_len=mean([x["len"] for x in recs]), columns=mean([x["cols"] for x in th]),
                wait_frac=mean([x["wait"] for x in recs]), accuracy_wait=mean([x["acc"] for x in waits]),
                accuracy_no_wait=mean([x["acc"] for x in th if not x["wait"]]),
                guess_wrong_before_wait=mean([x["guess_wrong"] for x in waits if x["guess_wrong"] is not None]),
                accuracy_shorter_half=mean([x["acc"] for x in by_len[:half]]),
                accuracy_longer_half=mean([x["acc"] for x in by_len[half:]])), ro.completions[:4]

def measure_runs(paths, out):
    "Measure trained models or run directories (their newest checkpoint) on the held-out sums; write them to `out`."
    from r1_ref.trainer import resolve_checkpoint
    held_out = list(toy.toy_datasets(2000, 200, 4, 0)[1])
    res = {}
    for p in paths:
        m, ex = measure(resolve_checkpoint(p), held_out)
        res[p] = dict(result=m, examples=ex)
        print(p, json.dumps(m), *ex, sep="\n  ")
    Path(out).write_text(json.dumps(res, indent=1))

def main():
    if sys.argv[1:2] == ["--measure"]: return measure_runs(sys.argv[3:], sys.argv[2])   # --measure OUT.json RUN ...
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name"); p.add_argument("--pretrain-steps", type=int, default=1000)
    p.add_argument("--keep", default="0.35,0.3,0.25,0.1"); p.add_argument("--retry", type=float, default=0.1)
    p.add_argument("--rl-steps", type=int, default=60); p.add_argument("--loss-type", default="dapo")
    p.add_argument("--seed", type=int, default=0); p.add_argument("--out", default="runs/patience")
    p.add_argument("--guess-right", type=float, default=0.5)
    p.add_argument("--tag", default="", help="appended to the RL run's name")
    p.add_argument("--extra", nargs="*", default=[], help="more trainer key=value overrides")
    a = p.parse_args()
    keep_w = [float(w) for w in a.keep.split(",")]
    base = Path(a.out) / a.name
    if not (base / "config.json").exists():
        # the library's corpus (chapter 3 §8); only the head-sums' accuracy is this script's own knob
        toy.worked_solution = partial(toy.worked_solution, guess_right=a.guess_right)
        tok = toy.build_tokenizer()
        model = toy.build_model(tok, seed=0)
        t0 = time.time()
        toy.pretrain(model, tok, steps=a.pretrain_steps, n_digits=4, keep=keep_w, retry=a.retry)
        model.save_pretrained(base); tok.save_pretrained(base)
        print(f"pretrained in {time.time() - t0:.0f} s")
    train, held_out = toy.toy_datasets(2000, 200, 4, 0)
    result_file = Path(a.out) / f"{a.name}-result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    if "base" not in result:
        m, ex = measure(base, list(held_out)); print("base", json.dumps(m), *ex, sep="\n  ")
        result = dict(command="python " + " ".join(sys.argv), base=m, base_examples=ex)
        result_file.write_text(json.dumps(result, indent=1))
    if not a.rl_steps: return
    from r1_ref.trainer import GRPOTrainer, load_config
    run = f"rl-{a.loss_type}-s{a.seed}{a.tag}"
    cfg = load_config("configs/toy_r1_zero.yaml", [f"model={base}", f"output_dir={base}-{run}", f"steps={a.rl_steps}",
                                                   "max_new_tokens=96", "save_steps=1000", "export_dtype=float32",
                                                   f"loss_type={a.loss_type}", f"seed={a.seed}", *a.extra])
    t0 = time.time(); GRPOTrainer(cfg).train(); print(f"GRPO in {time.time() - t0:.0f} s")
    m, ex = measure(Path(cfg.output_dir) / "final", list(held_out)); print(run, json.dumps(m), *ex, sep="\n  ")
    result[run] = dict(command="python " + " ".join(sys.argv), result=m, examples=ex, seconds=time.time() - t0)
    result_file.write_text(json.dumps(result, indent=1))   # metrics.jsonl: in {name}-{run}/

if __name__ == "__main__": main()
