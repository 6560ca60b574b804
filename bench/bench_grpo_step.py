"""Time r1_ref GRPO steps: completions/s, tokens/s, the rollout / reward / log-probs / update split, peak memory and MFU.

    python bench/bench_grpo_step.py [--steps 5] [--arch CONFIG.json] [--prompt-len N] [--peak-tflops F] [key=value ...]

One warm-up step, then --steps timed steps; prints medians. The key=value pairs are trainer config overrides (as for
`r1-ref train`), so any model, dataset, engine and batch shape can be timed.

* Toy world (default): the cached toy base model and task from runs/.
* --arch CONFIG.json: a real architecture (e.g. configs/arch/qwen2.5-0.5b-instruct.json) with *random weights* and a
  tokenizer of the same vocabulary size (the toy's characters plus placeholder tokens), saved under runs/arch-*/.
  Speed and memory do not depend on the weight values, so this measures a real-size model with no download. A
  random model rarely emits EOS, so completions run to max_new_tokens: the worst case for the rollout. --prompt-len
  pads the toy prompts with a filler sentence to about N tokens (GSM8K prompts under a chat template are ~150).
* MFU (with --peak-tflops, the accelerator's dense peak for the dtype, e.g. 989 for H100 SXM bf16): model FLOPs of
  the step over step time x peak. Model FLOPs count the matmuls with the linear layers' weights (lm_head included,
  attention scores not): 2·N per token in the rollout (prompt and completion), 2·N per token for each
  no-grad log-prob pass (old policy, reference) and 6·N per token per optimizer pass in the update, with N the
  number of weights in linear layers and tokens the unpadded prompt + completion tokens.
"""
import argparse, json, platform, resource, statistics, time
from pathlib import Path
import torch
from r1_ref.trainer import GRPOTrainer, load_config

ROOT = Path(__file__).resolve().parents[1]


def arch_model(config_json:str) -> str:
    "Save a random-weight model of the architecture in `config_json`, with a tokenizer of its vocabulary size; its path."
    from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Tokenizer
    from r1_ref.toy import build_tokenizer, TAGS
    out = ROOT / "runs" / f"arch-{Path(config_json).stem}"
    if (out / "config.json").exists(): return str(out)
    cfg = AutoConfig.from_pretrained(config_json)
    toy = build_tokenizer()
    vocab = dict(sorted(toy.get_vocab().items(), key=lambda kv: kv[1]))
    vocab |= {f"<x{i}>": i for i in range(len(vocab), cfg.vocab_size)}       # placeholders up to the model's vocabulary
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    tok.add_tokens(list(TAGS))
    cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = tok.pad_token_id, tok.bos_token_id, tok.eos_token_id
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(out); tok.save_pretrained(out)
    return str(out)


def linear_weights(model) -> int:
    "Number of weights in the model's linear layers (the lm_head counted even when tied to the embedding)."
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--arch", default=None, help="a model config.json: time this architecture with random weights")
    ap.add_argument("--prompt-len", type=int, default=0, help="pad the toy prompts to about this many tokens")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense TFLOP/s of the device, for MFU")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    extra = [f"model={arch_model(a.arch)}"] if a.arch else []
    if a.prompt_len:   # a template with a filler sentence before the question
        filler = "Please solve the following problem carefully and give the final answer. " * (a.prompt_len // 70 + 1)
        filler = filler[:max(0, a.prompt_len - 27)].rsplit(" ", 1)[0]
        extra.append(f"template=User: {filler} {{prompt}}. Assistant:")
    cfg = load_config(overrides=["output_dir=runs/bench", "progress=false", "eval_split=null", "toy_eval=0", *extra, *a.overrides])
    tr = GRPOTrainer(cfg)
    seen = []                                              # unpadded prompt + completion tokens of each step's rollout
    real = tr.rollout_and_score
    def counting(rows, engine, G, timing=None):
        ro, totals, parts = real(rows, engine, G, timing)
        seen.append((sum(map(len, ro.prompt_ids)), sum(map(len, ro.completion_ids))))
        return ro, totals, parts
    tr.rollout_and_score = counting
    cuda = torch.cuda.is_available()
    tr.train_step()                                        # warm-up
    if cuda: torch.cuda.reset_peak_memory_stats()
    rows = []
    for _ in range(a.steps):
        m = tr.train_step()
        m["prompt_tokens"], m["completion_tokens"] = seen[-1]
        rows.append(m)
    med = lambda k: statistics.median(r[k] for r in rows)
    step, N = med("time_step"), linear_weights(tr.policy)
    tokens = med("prompt_tokens") + med("completion_tokens")
    passes = (cfg.beta > 0) + (cfg.mu > 1 or (cfg.mini_batch_size or cfg.batch_size) < cfg.batch_size)  # no-grad log-prob passes
    flops = 2 * N * tokens + 2 * N * tokens * passes + 6 * N * tokens * cfg.mu
    device = torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine())
    print(f"r1_ref GRPO step on {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; model {cfg.model} "
          f"({N / 1e6:.1f}M weights in linear layers), engine {cfg.engine}; batch {cfg.batch_size} = "
          f"{cfg.batch_size // cfg.group_size} questions x G={cfg.group_size}, max_new_tokens {cfg.max_new_tokens}")
    print(f"median over {a.steps} steps: step {step:.2f} s | rollout {med('time_rollout'):.2f} s | reward {med('time_reward'):.2f} s"
          f" | old/ref log-probs {med('time_logps'):.2f} s | update {med('time_update'):.2f} s")
    print(f"completions/s {cfg.batch_size / step:.1f} | completion tokens/s {med('completion_tokens') / step:.0f} | "
          f"mean completion {med('completion_len'):.1f} tokens | mean prompt {med('prompt_tokens') / cfg.batch_size:.0f} tokens")
    mem = f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB | " if cuda else ""
    print(f"{mem}peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB | model FLOPs/step {flops / 1e12:.2f} T"
          + (f" | MFU {flops / step / (a.peak_tflops * 1e12):.1%} of {a.peak_tflops:g} TFLOP/s" if a.peak_tflops else ""))


if __name__ == "__main__":
    main()
