"""Guard (issue 21): fine-tuning a model on *correct* traces must not cost it the skill it already has.

A 1-digit toy base is pretrained in seconds on scratchpad answers until it gets every problem right; then it is
fine-tuned on correct traces of the same task with `SFTConfig`'s defaults. Its accuracy among thinking answers must
not drop. The old settings (lr 1e-3, length-grouped batches) must drop it — otherwise the guard could not fail."""
import json
from pathlib import Path
import pytest

QUESTIONS = [(a, b) for a in range(1, 10) for b in range(1, 10)]   # every 1-digit problem
OLD = dict(lr=1e-3, group_by_length=True)                          # SFT defaults before issue 21


def thinking_accuracy(model_dir) -> float:
    "Share of correct answers among the greedy answers that think, over every 1-digit problem."
    import torch
    from r1_ref.rollout import HFEngine, format_prompt
    from r1_ref.trainer import load_policy
    tok, model = load_policy(str(model_dir))
    with torch.no_grad(): ro = HFEngine(model.eval(), tok, 24, 0.0).generate([format_prompt(f"{a}+{b}", "toy") for a, b in QUESTIONS])
    thinking = [(c, a + b) for c, (a, b) in zip(ro.completions, QUESTIONS) if "</think>" in c]
    assert len(thinking) == len(QUESTIONS), ro.completions[:4]          # the base only ever saw thinking answers
    return sum(c.endswith(f"<answer>{s}</answer>") for c, s in thinking) / len(thinking)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    "One torch thread: on a shared 2-core machine two threads wait on each other (10x slower); restored after."
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def base(tmp_path_factory, one_thread):
    "A tiny toy model (2 layers, width 64) pretrained on 1-digit scratchpad answers: ~10 s alone on 2 cores."
    from r1_ref.toy import build_tokenizer, build_model, pretrain
    d = tmp_path_factory.mktemp("guard")
    tok = build_tokenizer()
    model = build_model(tok, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=128, max_position_embeddings=128)
    pretrain(model, tok, steps=300, batch_size=32, lr=3e-3, warmup=60, n_digits=1, mix=(0, 0, 1), progress=False)
    model.save_pretrained(d / "base"); tok.save_pretrained(d / "base")
    return d / "base", thinking_accuracy(d / "base")


def sft(base_dir, out, **overrides):
    "SFT of `base_dir` on 300 correct traces, 3 epochs (the cold start's shape), `SFTConfig` defaults unless overridden."
    import random
    from r1_ref.distill import SFTConfig, SFTTrainer
    from r1_ref.toy import toy_completion
    from r1_ref.trainer import latest_checkpoint
    rng = random.Random(7)
    rows = [{"prompt": f"{a}+{b}", "completion": toy_completion(a, b, "think"), "answer": str(a + b)}
            for a, b in (rng.choice(QUESTIONS) for _ in range(300))]
    data = out / "traces.jsonl"; out.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = SFTConfig(model=str(base_dir), sft_data=str(data), teacher=None, eval_split=None, epochs=3,
                    output_dir=str(out / "run"), save_steps=1000, progress=False, **overrides)
    SFTTrainer(cfg).train()
    return latest_checkpoint(out / "run")


def test_the_base_has_a_skill_to_lose(base):
    assert base[1] >= 0.95, base[1]


def test_sft_on_correct_traces_keeps_the_skill(base, tmp_path):
    acc = thinking_accuracy(sft(base[0], tmp_path))
    assert acc >= base[1] - 0.05, f"SFT with the defaults: accuracy among thinking answers {base[1]:.2f} -> {acc:.2f}"


def test_the_old_settings_lose_it(base, tmp_path):
    "The guard can fail: lr 1e-3 with length-grouped batches (one length band per batch) costs the skill."
    acc = thinking_accuracy(sft(base[0], tmp_path, **OLD))
    assert acc < base[1] - 0.05, f"old settings: {base[1]:.2f} -> {acc:.2f}; this toy no longer shows the damage"
