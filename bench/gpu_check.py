"""The GPU check of issue 16: real-size models on one GPU, nothing downloaded (run by bench/gpu_check.sh).

    python bench/gpu_check.py [--dry-run] [--only grpo|toy] [--peak-tflops 989]

For Qwen2.5-0.5B and 1.5B built from their published configs (configs/arch/) with random bf16 weights, saved the way
hub checkpoints are: 3 GRPO steps with the HF engine (and colocated vLLM if it imports), fp32 master weights with bf16
autocast compute. Prints completion tokens/s, the rollout / reward / log-probs / update split, peak GPU memory against
`r1_ref.scale.memory_estimate`, and MFU (the model-FLOPs count of bench/bench_grpo_step.py); asserts a finite loss
and weights that moved. Then the toy preset end to end (`r1-ref train`, the "toy model on one GPU") with its wall
time. --dry-run: the same code on CPU at toy sizes (one layer, 8 completions, 8 tokens), to check it runs.
"""
import argparse, importlib.util, json, math, os, subprocess, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_grpo_step import linear_weights        # noqa: E402  (the FLOP count's N)
from r1_ref.scale import memory_estimate           # noqa: E402
from r1_ref.trainer import GRPOTrainer, load_config   # noqa: E402


def varied(completions, **kwargs) -> list[float]:
    """A reward that differs between a random model's completions (distinct characters per character), so that the
    advantages, the gradient and the weight change are not zero; rewards=[gpu_check:varied]."""
    return [len(set(c)) / max(1, len(c)) for c in completions]


def random_checkpoint(config_json:Path, out:Path, shrink:bool=False) -> Path:
    "A random-weight model of `config_json` saved in bf16 (as hub checkpoints are), with a tokenizer of its vocabulary."
    from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Tokenizer
    from r1_ref.toy import build_tokenizer, TAGS
    if (out / "config.json").exists(): return out
    small = dict(num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_attention_heads=2,
                 num_key_value_heads=1, layer_types=["full_attention"])
    cfg = AutoConfig.from_pretrained(config_json, **(small if shrink else {}))
    vocab = dict(sorted(build_tokenizer().get_vocab().items(), key=lambda kv: kv[1]))
    vocab |= {f"<x{i}>": i for i in range(len(vocab), cfg.vocab_size - len(TAGS))}   # placeholders up to the vocabulary
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token="<bos>", eos_token="<eos>",
                         pad_token="<pad>")
    tok.add_tokens(list(TAGS))
    cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = tok.pad_token_id, tok.bos_token_id, tok.eos_token_id
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16)
    model.save_pretrained(out); tok.save_pretrained(out)
    return out


def grpo_check(name:str, path:Path, engine:str, dry:bool, peak_tflops:float) -> dict:
    "3 GRPO steps (1 in a dry run) of the model at `path`; prints and returns the measurements."
    cuda = torch.cuda.is_available()
    size = (["batch_size=8", "group_size=4", "micro_batch_size=4", "max_new_tokens=8"] if dry else
            ["batch_size=64", "group_size=8", "micro_batch_size=16", "max_new_tokens=256"])
    cfg = load_config(overrides=[f"model={path}", f"engine={engine}", "mixed_precision=bf16",
                                 "gradient_checkpointing=true",
                                 "eval_split=null", "toy_eval=0", "toy_train=256", "progress=false", "lr=1e-5",
                                 "rewards=[gpu_check:varied]",
                                 "warmup_steps=0", f"output_dir={ROOT / 'runs' / 'gpu_check' / name}", *size])
    tr = GRPOTrainer(cfg)
    p0 = {n: p.detach().clone() for n, p in tr.policy.named_parameters() if p.ndim == 2 and "layers.0." in n}
    assert {p.dtype for p in tr.policy.parameters()} == {torch.float32}, "fp32 masters expected"
    seen, real = [], tr.rollout_and_score
    def counting(rows, eng, G, timing=None):
        ro, totals, parts = real(rows, eng, G, timing)
        seen.append(sum(map(len, ro.prompt_ids)) + sum(map(len, ro.completion_ids)))
        return ro, totals, parts
    tr.rollout_and_score = counting
    if cuda: torch.cuda.reset_peak_memory_stats()
    rows = [tr.train_step() for _ in range(1 if dry else 3)]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(math.isfinite(l) for l in losses), f"loss not finite: {losses}"
    moved = sum(int((p.detach() != p0[n]).sum()) for n, p in tr.policy.named_parameters() if n in p0)
    assert moved > 0, "no weight moved"
    last, N = rows[-1], linear_weights(tr.policy)
    passes = (cfg.beta > 0) + (cfg.mu > 1 or (cfg.mini_batch_size or cfg.batch_size) < cfg.batch_size
                               or engine.startswith("vllm"))        # no-grad log-prob passes (as bench_grpo_step.py)
    flops = 2 * N * seen[-1] * (1 + passes) + 6 * N * seen[-1] * cfg.mu
    est = memory_estimate(tr.policy.config, world=1, micro_batch=cfg.micro_batch_size,
                          seq_len=max(1, seen[-1] // cfg.batch_size), dtype_bytes=2, gradient_checkpointing=True,
                          rollout_batch=cfg.batch_size, strategies=("ddp",))[0]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    out = dict(model=name, engine=engine, step_s=last["time_step"], rollout_s=last["time_rollout"],
               reward_s=last["time_reward"], logps_s=last["time_logps"], update_s=last["time_update"],
               completion_tokens_per_s=last["completion_len"] * cfg.batch_size / last["time_step"],
               peak_gib=peak, estimate_gib=est["total"], mfu=flops / last["time_step"] / (peak_tflops * 1e12),
               loss=losses[-1], moved_weights_layer0=moved, params_m=N / 1e6)
    print(f"[{name} | {engine}] step {out['step_s']:.2f} s = rollout {out['rollout_s']:.2f}"
          f" + reward {out['reward_s']:.2f}"
          f" + log-probs {out['logps_s']:.2f} + update {out['update_s']:.2f} | completion tokens/s "
          f"{out['completion_tokens_per_s']:.0f} | peak GPU {peak:.1f} GiB vs memory_estimate {est['total']:.1f} GiB "
          f"(weights {est['weights']:.1f}, grads {est['grads']:.1f}, optimizer {est['optimizer']:.1f}, activations "
          f"{est['activations']:.1f}, KV {est['kv_cache']:.1f}) | MFU {out['mfu']:.1%} of {peak_tflops:g} TFLOP/s | "
          f"loss {out['loss']:.4f} | {moved} layer-0 weights moved", flush=True)
    del tr
    if cuda: torch.cuda.empty_cache()
    return out


def toy_check(dry:bool) -> float:
    "`r1-ref train` with the toy preset, end to end; its wall time in seconds."
    out = ROOT / "runs" / "gpu_check"
    args = ["r1-ref", "train", str(ROOT / "configs" / "toy_r1_zero.yaml"), f"output_dir={out / 'toy'}",
            f"toy_cache={out}", "progress=false"]
    if dry: args += ["toy_pretrain_steps=2", "steps=1", "batch_size=8", "group_size=4", "micro_batch_size=4",
                     "toy_train=16", "toy_eval=4", "max_new_tokens=8"]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    rows = [json.loads(l) for l in (out / "toy" / "metrics.jsonl").read_text().splitlines()]
    acc = [r.get("eval/accuracy") for r in rows if "eval/accuracy" in r]
    print(f"[toy preset] r1-ref train: {wall:.0f} s wall, {rows[-1]['step']} steps, "
          f"eval accuracy {acc[0]} -> {acc[-1]}", flush=True)
    return wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="toy sizes on CPU: checks that the script runs")
    ap.add_argument("--only", choices=("grpo", "toy"), default=None)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    a = ap.parse_args()
    if not a.dry_run and not torch.cuda.is_available(): sys.exit("no CUDA GPU: run with --dry-run on CPU")
    t0 = time.perf_counter()
    if torch.cuda.is_available(): print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    engines = ["hf"] + (["vllm"] if importlib.util.find_spec("vllm") and not a.dry_run else [])
    results = []
    if a.only in (None, "grpo"):
        for name in ("qwen2.5-0.5b-instruct", "qwen2.5-1.5b"):
            suffix = "-dry" if a.dry_run else ""
            path = random_checkpoint(ROOT / "configs" / "arch" / f"{name}.json",
                                     ROOT / "runs" / f"random-{name}{suffix}", shrink=a.dry_run)
            for engine in engines: results.append(grpo_check(name, path, engine, a.dry_run, a.peak_tflops))
    if a.only in (None, "toy"): results.append({"toy_wall_s": toy_check(a.dry_run)})
    print(json.dumps(results), flush=True)
    print(f"gpu_check done in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
