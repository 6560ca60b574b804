"""Every real-model recipe in configs/ runs end to end on a tiny "hub-shaped" checkpoint (bf16 weights, padded vocabulary,
byte-level BPE with a chat template, several EOS ids: tests/hub_fixture.py), launched as its header comment says; and the
real-model pitfalls that the fp32 toy model cannot show: bf16 checkpoints at lr 3e-6, multi-token stop strings, several
EOS ids, a chat template that prefills `<think>`."""
import json, os, re, socket, subprocess, sys
from pathlib import Path
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from hub_fixture import save_hub_model, write_gsm8k, rig_bigram, rig_text

ROOT = Path(__file__).parents[1]
RECIPES = sorted(p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("toy_"))
TRACE = "<think>.ok</think>\n\n<answer>\n42</answer>"   # the distillation teacher's answer (spelt with distinct tokens)


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONFAULTHANDLER": "1",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def metrics(out) -> list[dict]:
    return [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines() if l.strip()]


# ---------------------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    "Tiny hub-shaped checkpoints and GSM8K-format data (built once per module)."
    d = tmp_path_factory.mktemp("hub")
    return {"qwen2": save_hub_model(d / "qwen2", "qwen2"),                           # R1-Distill-style `<think>\n` prefill
            "qwen2_instruct": save_hub_model(d / "qwen2_instruct", "qwen2", think_prefill=False),   # Qwen2.5-Instruct's
            "llama": save_hub_model(d / "llama", "llama"),
            "gsm8k": write_gsm8k(d / "gsm8k.jsonl", 16),
            "gsm8k_42": write_gsm8k(d / "gsm8k_42.jsonl", 8, seed=1, answer=42)}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """An untied Qwen2.5-Instruct-shaped teacher (as Qwen2.5-7B-Instruct) rigged to answer any chat prompt with a
    well-formed, correct (42) trace and then EOS: rejection sampling keeps its traces (same tokenizer as the student)."""
    from transformers import AutoTokenizer
    d = save_hub_model(tmp_path_factory.mktemp("teacher") / "teacher", "qwen2", tied=False, think_prefill=False)
    tok = AutoTokenizer.from_pretrained(d)
    prompt = tok.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False, add_generation_prompt=True)
    return rig_text(d, tok(prompt, add_special_tokens=False).input_ids[-1], TRACE, tok.eos_token_id)


def test_fixture_round_trips(hub):
    "What the hub files promise: bf16 weights loaded as bf16, a padded vocabulary, several EOS ids, the chat template."
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    for name, eos, pad in (("qwen2", "<|im_end|>", "<|endoftext|>"), ("llama", "<|eot_id|>", None)):
        path = hub[name]
        cfg = json.loads((path / "config.json").read_text())
        assert (cfg.get("dtype") or cfg.get("torch_dtype")) == "bfloat16"
        tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
        gen = GenerationConfig.from_pretrained(path)
        assert model.dtype == torch.bfloat16 and model.config.vocab_size > len(tok)
        assert model.config.tie_word_embeddings == (name == "qwen2")
        assert tok.eos_token == eos and tok.pad_token == pad
        assert isinstance(gen.eos_token_id, list) and len(gen.eos_token_id) >= 2 and tok.eos_token_id in gen.eos_token_id
        assert gen.do_sample and gen.temperature == 0.7 and gen.top_p == 0.8
        for tag in ("<think>", "</think>", "<answer>", "</answer>"): assert len(tok.encode(tag, add_special_tokens=False)) >= 2
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 6*7?"}]
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        assert text.endswith("<think>\n") and "Be brief." in text and "What is 6*7?" in text
        assert not tok.apply_chat_template(msgs[1:], tokenize=False, add_generation_prompt=False).endswith("<think>\n")
    llama_tok = AutoTokenizer.from_pretrained(hub["llama"])
    assert llama_tok("hi").input_ids[0] == llama_tok.bos_token_id    # Llama-3 prepends BOS; Qwen has none
    assert AutoTokenizer.from_pretrained(hub["qwen2"]).bos_token is None


# --------------------------------------------------------------------------------------------------------- every recipe
def launcher(recipe:Path) -> tuple[str, str, str|None]:
    "From the recipe's header comment: the command (train/distill/sft), how it is launched, and its accelerate config."
    head = "\n".join(l for l in recipe.read_text().splitlines() if l.lstrip().startswith("#"))
    keys = yaml.safe_load(recipe.read_text()) or {}
    m = re.search(r"(?:r1-ref|r1_ref\.cli)\s+(train|distill|sft)\b", head)
    command = m[1] if m else "distill" if keys.get("teacher") else "train"
    acc = re.search(r"accelerate launch --config_file (\S+)", head)
    if "sbatch" in head or "--nnodes" in head: how = "slurm"             # scripts/slurm_r1.sh, two one-process "nodes"
    elif acc or "torchrun" in head: how = "accelerate" if acc else "torchrun"
    else: how = "one"
    return command, how, acc[1] if acc else None


FAKE_SLURM = {   # as tests/test_distributed.py: srun starts one copy per "node" here
    "srun": '#!/bin/bash\nshift\npids=(); for i in $(seq 0 $((SLURM_JOB_NUM_NODES - 1))); do SLURM_NODEID=$i "$@" & pids+=($!); done\n'
            'rc=0; for p in "${pids[@]}"; do wait $p || rc=$?; done; exit $rc\n',
    "scontrol": "#!/bin/bash\necho 127.0.0.1\n",
    "nvidia-smi": "#!/bin/bash\necho 'GPU 0: fake'\n",
}


def overrides(recipe:Path, command:str, hub:dict, teacher:Path|None, out:Path) -> list[str]:
    "The recipe sized down to a few seconds on CPU; the model and data replaced by the fixture."
    keys = yaml.safe_load(recipe.read_text()) or {}
    common = [f"output_dir={out}", "steps=2", "save_steps=2", "eval_max=2", "eval_samples=1", "progress=false"]
    if command == "distill":
        return [*common, f"model={hub['qwen2_instruct']}", f"teacher={teacher}", f"dataset={hub['gsm8k_42']}",
                "samples_per_prompt=2", "max_new_tokens=32", "batch_size=4", "micro_batch_size=2", "max_length=512"]
    o = [*common, f"model={hub['qwen2' if keys.get('template') == 'chat' else 'qwen2_instruct']}", f"dataset={hub['gsm8k']}",
         "batch_size=8", "group_size=4", "mini_batch_size=4", "micro_batch_size=2", "max_new_tokens=16", "dist_timeout_s=120"]
    if str(keys.get("engine", "hf")).startswith("vllm"): o.append("engine=hf")   # no vLLM on CPU
    return o


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs_on_hub_shaped_model(recipe, hub, request, tmp_path):
    "The recipe, launched as its header says (2 CPU processes where it is multi-process), 2 steps: exit 0, metrics, checkpoint."
    command, how, acc_cfg = launcher(recipe)
    teacher = request.getfixturevalue("teacher") if command == "distill" else None
    out = tmp_path / "run"
    args = [command, str(recipe), *overrides(recipe, command, hub, teacher, out)]
    if how == "one": cmd, extra = ["r1-ref", *args], {}
    elif how == "torchrun":
        cmd, extra = ["torchrun", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                      "-m", "r1_ref.cli", *args], {}
    elif how == "accelerate":
        cmd, extra = ["accelerate", "launch", "--config_file", str(ROOT / acc_cfg), "--num_processes", "2",
                      "--main_process_port", str(free_port()), "-m", "r1_ref.cli", *args], {}
    else:
        bin_ = tmp_path / "bin"; bin_.mkdir()
        for name, text in FAKE_SLURM.items(): (bin_ / name).write_text(text); (bin_ / name).chmod(0o755)
        assert command == "train", "scripts/slurm_r1.sh launches `train` only"
        cmd = ["bash", str(ROOT / "scripts" / "slurm_r1.sh"), *args[1:]]
        extra = {"PATH": f"{bin_}:{os.environ['PATH']}", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "n[1-2]",
                 "SLURM_JOB_ID": "7", "MASTER_PORT": str(free_port())}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=ROOT, env={**env(), **extra})
    assert res.returncode == 0, f"{how} {command} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    rows = metrics(out)
    assert [r["step"] for r in rows] == [0, 1, 2], rows
    assert "loss" in rows[-1] and all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in rows[1:])
    ck = out / "checkpoint-000002"
    assert (ck / "config.json").exists() and list(ck.glob("*.safetensors")) and (ck / "trainer_state.pt").exists()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    m = AutoModelForCausalLM.from_pretrained(ck)
    assert all(torch.isfinite(p.float()).all() for p in m.parameters())
    assert AutoTokenizer.from_pretrained(ck).chat_template is not None
    if command == "distill":
        assert json.loads((out / "traces.stats.json").read_text()).get("kept", 0) > 0


def test_llama_shaped_checkpoint_trains_with_hf_generate(hub, tmp_path):
    "The single-GPU recipe on a Llama-3-shaped checkpoint (no pad token, BOS in the template, 3 EOS ids in config.json) with 🤗 generate."
    out = tmp_path / "run"
    res = subprocess.run(["r1-ref", "train", str(ROOT / "configs" / "qwen2.5-0.5b-gsm8k.yaml"), f"model={hub['llama']}",
                          f"dataset={hub['gsm8k']}", "engine=hf_generate", "steps=2", "save_steps=2", "batch_size=8",
                          "group_size=4", "mini_batch_size=4", "micro_batch_size=2", "max_new_tokens=16", "eval_max=2",
                          "eval_samples=1", "progress=false", f"output_dir={out}"],
                         capture_output=True, text=True, timeout=300, env=env())
    assert res.returncode == 0, res.stderr[-4000:]
    assert [r["step"] for r in metrics(out)] == [0, 1, 2]
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(out / "checkpoint-000002")
    assert tok.bos_token == "<|begin_of_text|>" and tok.chat_template is not None


# ------------------------------------------------------------------------------------------- bf16 checkpoint, lr 3e-6
def test_bf16_checkpoint_weights_move_at_lr_3e_6(hub, tmp_path):
    """R1's lr 3e-6 from a bf16 checkpoint: after 2 steps most weights of the decoder layers must have changed.

    AdamW's first steps move each weight by about lr = 3e-6; bf16 keeps 8 bits of mantissa, so a weight of 0.02 only
    changes by multiples of 1.2e-4 and such an update rounds away unless the optimizer holds fp32 master weights (and the
    checkpoint keeps them)."""
    from safetensors.torch import load_file
    out = tmp_path / "run"
    # rewards=[language]: on a random model the share of on-language words varies from completion to completion (the
    # fixture's BPE knows a little Chinese, French, German, Russian), so the group advantages are not all zero.
    res = subprocess.run(["r1-ref", "train", str(ROOT / "configs" / "qwen2.5-0.5b-gsm8k.yaml"), f"model={hub['qwen2']}",
                          f"dataset={hub['gsm8k']}", "rewards=[language]", "lr=3e-6", "warmup_steps=0", "steps=2",
                          "save_steps=2", "batch_size=16", "group_size=4", "mini_batch_size=8", "micro_batch_size=4",
                          "max_new_tokens=16", "eval_split=null", "progress=false", f"output_dir={out}"],
                         capture_output=True, text=True, timeout=300, env=env())
    assert res.returncode == 0, res.stderr[-4000:]
    rows = metrics(out)
    assert all(r["reward_std"] > 0 and r["grad_norm"] > 0 for r in rows[1:]), "no learning signal: the test would be vacuous"
    init = load_file(hub["qwen2"] / "model.safetensors")
    trained = {}
    for f in (out / "checkpoint-000002").glob("*.safetensors"): trained |= load_file(f)
    keys = [k for k in init if k.startswith("model.layers.") and init[k].ndim == 2]
    assert keys and all(k in trained for k in keys)
    changed = sum(int((trained[k].float() != init[k].float()).sum()) for k in keys)
    total = sum(init[k].numel() for k in keys)
    frac = changed / total
    print(f"{frac:.1%} of {total} decoder-layer weights changed; checkpoint dtype {trained[keys[0]].dtype}")
    assert frac > 0.5, (f"only {frac:.1%} of the decoder-layer weights changed after 2 steps at lr 3e-6 "
                        f"(checkpoint dtype {trained[keys[0]].dtype}): bf16 weights updated in place round tiny updates away")


# -------------------------------------------------------------------------------------- stop strings and several EOS ids
@pytest.fixture(scope="module")
def rigged(tmp_path_factory):
    "Untied Qwen2.5-Instruct-shaped models whose next token is a fixed function of the current one, one per ending."
    from transformers import AutoTokenizer
    d = tmp_path_factory.mktemp("rigged")
    base = save_hub_model(d / "base", "qwen2", tied=False, think_prefill=False)
    tok = AutoTokenizer.from_pretrained(base)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 6*7?"}], tokenize=False, add_generation_prompt=True)
    last = tok(prompt, add_special_tokens=False).input_ids[-1]
    loop = tok.encode(" ok", add_special_tokens=False)[-1]                    # a token that repeats itself forever
    body = tok.encode("42</answer>", add_special_tokens=False)    # "4", "2", "</", "answer", ">"
    body2 = tok.encode("42", add_special_tokens=False)
    im_end, endoftext = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert len(set(body + [last, loop])) == len(body) + 2, "the rigged chain needs distinct tokens"
    chain = lambda toks, end: {**dict(zip([last, *toks[:-1]], toks)), toks[-1]: end, loop: loop, endoftext: loop}
    endings = {"stop_string": (body, loop),            # ... </answer> then on and on: the stop string must end it
               "eos": (body2, im_end),                  # the tokenizer's EOS
               "second_eos": (body2, endoftext),        # generation_config's other EOS id (Qwen2.5-Instruct: <|endoftext|>)
               "none": (body2, loop)}                   # never stops: truncated
    import shutil
    out = {}
    for name, (toks, end) in endings.items():
        shutil.copytree(base, d / name)
        out[name] = rig_bigram(d / name, chain(toks, end))
    return out, prompt


@pytest.mark.parametrize("engine", ["hf", "hf_generate"])
@pytest.mark.parametrize("ending", ["stop_string", "eos", "second_eos", "none"])
def test_stop_strings_and_every_eos_id_end_completions(rigged, ending, engine):
    "A completion that ends with the multi-token `</answer>` or at any EOS id of generation_config is complete, not truncated."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from r1_ref.rollout import HFEngine
    paths, prompt = rigged
    tok, model = AutoTokenizer.from_pretrained(paths[ending]), AutoModelForCausalLM.from_pretrained(paths[ending])
    T = 12
    eng = HFEngine(model, tok, max_new_tokens=T, temperature=1.0, use_generate=engine == "hf_generate")
    ro = eng.generate([prompt, prompt], group_size=2)
    texts, ids = ro.completions, ro.completion_ids
    assert all(t.startswith("42") for t in texts), texts          # the rig works
    if ending == "none":
        assert all(ro.truncated) and all(len(c) == T for c in ids), (ro.truncated, ids)
        return
    assert not any(ro.truncated), f"{engine}: completions ending at {ending} reported truncated: {texts} {ids}"
    if ending == "stop_string": assert all(t.endswith("</answer>") for t in texts), texts
    else:
        end = tok.convert_tokens_to_ids("<|im_end|>" if ending == "eos" else "<|endoftext|>")
        assert all(c[-1] == end for c in ids) and all(t == "42" for t in texts), (ids, texts)


@pytest.mark.parametrize("engine", ["hf", "hf_generate"])
def test_engine_samples_from_the_policy_not_the_checkpoints_sampling_defaults(hub, engine):
    """Qwen2.5-Instruct's generation_config.json carries repetition_penalty 1.05, top_k 20, T 0.7, top-p 0.8: the rollout
    must sample from the policy at the trainer's temperature/top-p only (GRPO's ratio assumes it), so at T=1, top-p 1 the
    engine's log-probs equal the policy's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from r1_ref.rollout import HFEngine
    from r1_ref.trainer import make_batch, token_logps
    tok = AutoTokenizer.from_pretrained(hub["qwen2"])
    model = AutoModelForCausalLM.from_pretrained(hub["qwen2"], dtype=torch.float32)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 6*7?"}], tokenize=False, add_generation_prompt=True)
    torch.manual_seed(0)
    eng = HFEngine(model, tok, max_new_tokens=24, temperature=1.0, top_p=1.0, logprobs=True, use_generate=engine == "hf_generate")
    ro = eng.generate([prompt, prompt], group_size=4)
    lp = token_logps(model, make_batch(ro, tok.pad_token_id), 1.0)
    worst = max(float((lp[i, :len(c)] - torch.tensor(ro.logps[i])).abs().max()) for i, c in enumerate(ro.completion_ids))
    assert worst < 1e-3, f"{engine}: sampling log-probs differ from the policy's by up to {worst:.3g} nats"


# ------------------------------------------------------------------------------------------------ a `<think>\n` prefill
def test_think_prefilled_by_the_chat_template_counts_for_format(hub, tmp_path):
    """DeepSeek-R1-Distill's chat template ends the prompt with `<think>\\n`, so a well-formed completion starts inside
    the thinking block ("...</think>\\n<answer>...</answer>"): the format reward must count the prefilled tag."""
    from r1_ref.trainer import GRPOTrainer, load_config
    from r1_ref.rollout import Rollout
    cfg = load_config(ROOT / "configs" / "qwen2.5-0.5b-gsm8k.yaml",
                      [f"model={hub['qwen2']}", f"dataset={hub['gsm8k']}", "rewards=[format]", "batch_size=4", "group_size=4",
                       "mini_batch_size=4", "micro_batch_size=4", "max_new_tokens=16", "eval_split=null", "beta=0",
                       "gradient_checkpointing=false", "mixed_precision=no", "progress=false", f"output_dir={tmp_path}"])
    tr = GRPOTrainer(cfg)

    class Fixed:
        reports_logps = False
        def __init__(s, tok): s.tok, s.prompts = tok, []
        def load_weights(s, model): pass
        def generate(s, prompts, G):
            s.prompts += prompts
            text = "Six times seven is 42.\n</think>\n<answer>\n42\n</answer>"
            p, c = tr.tok.encode(prompts[0], add_special_tokens=False), tr.tok.encode(text, add_special_tokens=False)
            return Rollout([p] * len(prompts) * G, [c] * len(prompts) * G, [text] * len(prompts) * G, [False] * len(prompts) * G,
                           None, G)

    tr.engine = Fixed(tr.tok)
    m = tr.train_step()
    assert all(p.endswith("<think>\n") for p in tr.engine.prompts)
    assert m["reward/format"] == 1.0, f"format reward {m['reward/format']} for completions after a prefilled <think>"
