"""Chapter 9's claims about the real-model recipe, checked without a GPU or the hub: parameter counts and memory per GPU of
Qwen2.5-0.5B/1.5B/7B from their configurations; what a hub-shaped checkpoint brings (tests/hub_fixture.py) and how the
engine and the rewards handle it; `r1-ref eval` on that stand-in with lighteval's answer reader."""
import json, sys
from pathlib import Path
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from hub_fixture import save_hub_model, write_gsm8k

ROOT = Path(__file__).parents[1]
QWEN7B = dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
              num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False)   # Qwen2.5-7B-Instruct's config.json


def arch(name): return json.loads((ROOT / "configs" / "arch" / name).read_text())


def recipe_gib(cfg, world=1, strategy="ddp", new_tokens=1024, micro_batch=8) -> float:
    "GiB per GPU of configs/qwen2.5-0.5b-gsm8k.yaml's sizes for `cfg`, with the trainer's fp32 reference model (beta > 0)."
    from r1_ref.scale import memory_estimate, param_count
    row = memory_estimate(cfg, world=world, micro_batch=micro_batch, seq_len=256 + new_tokens, dtype_bytes=2,
                          gradient_checkpointing=True, rollout_batch=128, strategies=(strategy,))[0]
    return row["total"] + param_count(cfg) * 4 / 2**30


def test_parameter_counts_from_configs():
    from r1_ref.scale import param_count
    assert param_count(arch("qwen2.5-0.5b-instruct.json")) == 494_032_768
    assert round(param_count(arch("qwen2.5-1.5b.json")) / 1e9, 2) == 1.54
    assert round(param_count(QWEN7B) / 1e9, 2) == 7.62


def test_recipe_memory_per_gpu():
    "0.5B and 1.5B fit one 80 GB GPU; 7B needs sharding, and then the unsharded fp32 reference is the largest item."
    assert recipe_gib(arch("qwen2.5-0.5b-instruct.json")) == pytest.approx(26.5, abs=0.2)
    assert recipe_gib(arch("qwen2.5-1.5b.json")) == pytest.approx(49.4, abs=0.2)
    assert recipe_gib(QWEN7B) > 160 and recipe_gib(QWEN7B, world=8, strategy="fsdp") < 80
    longest = max(n for n in range(256, 65537, 256) if recipe_gib(arch("qwen2.5-1.5b.json"), new_tokens=n) <= 80)
    assert longest == 2816


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub")
    return {"instruct": save_hub_model(d / "instruct", "qwen2", think_prefill=False),
            "distill": save_hub_model(d / "distill", "qwen2"),
            "gsm8k": write_gsm8k(d / "gsm8k.jsonl", 4), "dir": d}


def test_chat_prompt_engine_and_precision(stand_in):
    from transformers import AutoTokenizer, GenerationConfig
    from r1_ref.rewards import format_reward
    from r1_ref.rollout import HFEngine, format_prompt
    from r1_ref.trainer import load_config, load_policy
    cfg = load_config(ROOT / "configs" / "qwen2.5-0.5b-gsm8k.yaml")
    tok, tok_d = (AutoTokenizer.from_pretrained(stand_in[k]) for k in ("instruct", "distill"))
    assert format_prompt("q", "chat", tok, cfg.system_prompt).endswith("<|im_start|>assistant\n")
    assert format_prompt("q", "chat", tok_d, cfg.system_prompt).endswith("<|im_start|>assistant\n<think>\n")
    done = "48 + 24 = 72.\n</think>\n<answer>\n72\n</answer>"
    assert format_reward([done], think_prefilled=True) == [1.0] and format_reward([done]) == [0.0]
    _, model = load_policy(stand_in["instruct"])
    assert next(model.parameters()).dtype == torch.float32            # fp32 masters from a bf16 checkpoint
    assert next(load_policy(stand_in["instruct"], dtype="auto")[1].parameters()).dtype == torch.bfloat16
    eng = HFEngine(model, tok, temperature=cfg.temperature, top_p=cfg.top_p)
    gen = GenerationConfig.from_pretrained(stand_in["instruct"])
    assert set(gen.eos_token_id) <= set(eng.eos_ids) and eng.stop_strings == ["</answer>"]
    assert (eng.temperature, eng.top_p) == (1.0, 1.0)               # not generation_config.json's 0.7 / 0.8


def test_bf16_rounds_an_update_of_3e_6_away():
    w = torch.tensor(0.02, dtype=torch.bfloat16)
    assert w + torch.tensor(3e-6, dtype=torch.bfloat16) == w
    assert w.float() + 3e-6 != w.float()


def test_vllm_rollouts_need_top_p_1():
    from r1_ref.trainer import ConfigError, load_config
    with pytest.raises(ConfigError, match="renormalised over the nucleus"):
        load_config(ROOT / "configs" / "qwen2.5-0.5b-gsm8k.yaml", ["engine=vllm", "top_p=0.95"])


def test_r1_ref_eval_on_the_stand_in_with_lighteval_reader(stand_in):
    "The `r1-ref eval` command as chapter 9 shows it (chat template, system prompt, lighteval reader), on the stand-in."
    from r1_ref.cli import main
    from r1_ref.trainer import load_config
    out = stand_in["dir"] / "eval"
    system = load_config(ROOT / "configs" / "qwen2.5-0.5b-gsm8k.yaml").system_prompt
    main(["eval", str(stand_in["distill"]), "--bench", "gsm8k", "--data", str(stand_in["gsm8k"]), "--k", "2",
          "--max-problems", "2", "--max-new-tokens", "8", "--template", "chat", "--system", system, "--device", "cpu",
          "--extractor", "lighteval", "--unanswered", "vote", "--out", str(out)])
    summary = json.loads((out / "distill" / "gsm8k" / "summary.json").read_text())
    assert (summary["extractor"], summary["unanswered"], summary["problems"], summary["samples"]) == ("lighteval", "vote", 2, 2)
    rows = [json.loads(l) for l in (out / "distill" / "gsm8k" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["prompt"] and "correct" in r for r in rows)
