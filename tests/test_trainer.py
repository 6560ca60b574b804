"GRPO trainer runs as a user runs them: the CLI, resume after kill -9, real-model code paths on the toy, bad input."
import json, subprocess
from pathlib import Path
import pytest
import torch

TINY = ["toy_pretrain_steps=10", "batch_size=16", "group_size=4", "micro_batch_size=8", "toy_train=64", "toy_eval=8",
        "max_new_tokens=48", "progress=false"]
TIME_KEYS = ("time_rollout", "time_reward", "time_logps", "time_update", "time_step")


@pytest.fixture(scope="module")
def toy_cache(tmp_path_factory):
    "A toy base model built once for the module (10 pretraining steps: plumbing, not learning)."
    from r1_ref.toy import toy_base_model
    d = tmp_path_factory.mktemp("toy")
    toy_base_model(d, steps=10, progress=False)
    return d


def r1ref(*args, timeout=600, **kw):
    return subprocess.run(["r1-ref", *args], capture_output=True, text=True, timeout=timeout, **kw)


def metrics(path):
    rows = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


def test_kill9_then_resume_reproduces_metrics(toy_cache, tmp_path, kill9_then_resume):
    common = [*TINY, f"toy_cache={toy_cache}", "steps=6", "save_steps=2", "mu=2", "beta=0.01"]
    full = r1ref("train", *common, f"output_dir={tmp_path}/full")
    assert full.returncode == 0, full.stderr[-2000:]
    out = tmp_path / "killed"
    resumed = kill9_then_resume("train", common, out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = metrics(tmp_path / "full" / "metrics.jsonl"), metrics(out / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(7))
    assert a == b


def test_real_model_recipe_code_path_on_toy_model(toy_cache, tmp_path):
    "configs/qwen2.5-0.5b-gsm8k.yaml with the toy model (given a chat template) and a local GSM8K-format file."
    from transformers import AutoTokenizer
    model_dir = tmp_path / "model"
    tok = AutoTokenizer.from_pretrained(toy_cache / "base")
    tok.chat_template = "{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}. Assistant:{% endif %}{% endfor %}"
    tok.save_pretrained(model_dir)
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(toy_cache / "base").save_pretrained(model_dir)
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"question": f"{a}+{a}", "answer": f"Double it.\n#### {2 * a}"}) + "\n" for a in range(10, 30)))
    recipe = Path(__file__).parents[1] / "configs" / "qwen2.5-0.5b-gsm8k.yaml"
    res = r1ref("train", str(recipe), f"model={model_dir}", f"dataset={data}", "eval_split=null", "steps=2",
                "batch_size=16", "group_size=4", "mini_batch_size=8", "micro_batch_size=4", "max_new_tokens=16",
                "mixed_precision=no", f"output_dir={tmp_path}/run", "progress=false")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and "kl" in rows[-1]     # eval_split=null: no empty step-0 line
    assert (tmp_path / "run" / "checkpoint-000002" / "model.safetensors").exists()
    assert (tmp_path / "run" / "curves.png").exists()


def test_toy_model_loads_by_path(toy_cache):
    from r1_ref.trainer import load_policy
    tok, model = load_policy(str(toy_cache / "base"))
    assert type(model).__name__ == "Qwen2ForCausalLM" and tok.convert_tokens_to_ids("<think>") != tok.unk_token_id


@pytest.mark.parametrize("args,message", [
    (["grup_size=4"], "unknown config key 'grup_size'"),
    (["batch_size=30", "group_size=8"], "batch_size"),
    (["model=/nonexistent/model"], "/nonexistent/model"),
    (["loss_type=ppo"], "loss_type"),
    (["/no/such/config.yaml"], "does not exist"),
    (["rewards=[format,no_such_pkg.rewards:brevity]"], "cannot import module 'no_such_pkg.rewards'"),
    (["rewards=[format,json:nope]"], "module 'json' has no attribute 'nope'"),
    (["rewards=[fromat]"], "unknown reward 'fromat'"),
])
def test_bad_config_one_clear_error(args, message, tmp_path):
    res = r1ref("train", *args, f"output_dir={tmp_path}", timeout=120)
    assert res.returncode != 0
    assert message in res.stderr and "Traceback" not in res.stderr, res.stderr[-1500:]


def test_dataset_row_without_answer(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "1+1", "answer": "2"}) + "\n" + json.dumps({"prompt": "2+2"}) + "\n")
    res = r1ref("train", f"dataset={data}", "eval_split=null", f"output_dir={tmp_path}/o", "toy_pretrain_steps=1", f"toy_cache={tmp_path}", timeout=300)
    assert res.returncode != 0 and "train row 1 has no 'answer'" in res.stderr, res.stderr[-1500:]


def test_nan_loss_stops_clearly_and_keeps_last_checkpoint(toy_cache, tmp_path, monkeypatch):
    import r1_ref.trainer as T
    cfg = T.load_config(overrides=[*TINY, f"toy_cache={toy_cache}", "steps=4", "save_steps=1", f"output_dir={tmp_path}"])
    tr = T.GRPOTrainer(cfg)
    real = T.grpo_loss
    def poisoned(*a, **k):
        loss, st = real(*a, **k)
        return (loss * float("nan") if tr.step >= 2 else loss), st
    monkeypatch.setattr(T, "grpo_loss", poisoned)
    with pytest.raises(T.NonFiniteLoss, match="step 2"):
        tr.train()
    ck = T.latest_checkpoint(tmp_path)
    assert ck.name == "checkpoint-000002"
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(ck)
    assert all(torch.isfinite(p).all() for p in m.parameters())


def test_toy_preset_file_is_the_default_config():
    from r1_ref.trainer import load_config
    assert load_config(Path(__file__).parents[1] / "configs" / "toy_r1_zero.yaml") == load_config()


def test_cold_and_cached_base_give_the_same_run(tmp_path):
    "Building the toy base model consumes random numbers; the run after it must not depend on whether it was cached."
    common = [*TINY, f"toy_cache={tmp_path}/cache", "steps=2", "save_steps=2"]
    cold = r1ref("train", *common, f"output_dir={tmp_path}/cold")
    cached = r1ref("train", *common, f"output_dir={tmp_path}/cached")
    assert cold.returncode == 0 and cached.returncode == 0, cold.stderr[-1500:] + cached.stderr[-1500:]
    assert "pretrained the toy base model" in cold.stdout and "pretrained the toy base model" not in cached.stdout
    assert metrics(tmp_path / "cold" / "metrics.jsonl") == metrics(tmp_path / "cached" / "metrics.jsonl")


def test_truncated_importance_sampling_with_a_perturbed_engine(toy_cache, tmp_path):
    "An engine whose sampling log-probs differ from the trainer's (as vLLM's do): TIS weights min(pi_old/pi_rollout, cap)."
    import math
    import r1_ref.trainer as T
    from r1_ref.rollout import HFEngine

    class PerturbedEngine(HFEngine):
        "HFEngine reporting log-probs shifted by +0.5 on even positions and -1.0 on odd ones."
        def __init__(self, *a, shift=True, **k): super().__init__(*a, logprobs=True, **k); self.shift, self.last = shift, None
        def generate(self, prompts, group_size=1):
            ro = super().generate(prompts, group_size)
            if self.shift: ro.logps = [[lp + (0.5 if t % 2 == 0 else -1.0) for t, lp in enumerate(row)] for row in ro.logps]
            self.last = ro
            return ro

    cfg = T.load_config(overrides=[*TINY, f"toy_cache={toy_cache}", f"output_dir={tmp_path}", "tis_cap=2.0"])
    tr = T.GRPOTrainer(cfg)
    tr.engine = PerturbedEngine(tr.policy, tr.tok, cfg.max_new_tokens, cfg.temperature, cfg.top_p, shift=False)
    m = tr.train_step()     # unperturbed: the engine and the trainer agree, every weight is 1
    assert m["tis_weight"] == pytest.approx(1.0, abs=1e-3) and m["tis_clipped"] == 0
    tr.engine = PerturbedEngine(tr.policy, tr.tok, cfg.max_new_tokens, cfg.temperature, cfg.top_p)
    m = tr.train_step()
    n_even = sum((len(c) + 1) // 2 for c in tr.engine.last.completion_ids)
    n = sum(len(c) for c in tr.engine.last.completion_ids)
    assert m["tis_clipped"] == pytest.approx((n - n_even) / n)       # exp(+1.0) = 2.7 > cap: truncated to 2
    assert m["tis_weight"] == pytest.approx((n_even * math.exp(-0.5) + (n - n_even) * 2.0) / n, rel=1e-3)
    assert math.isfinite(m["loss"])


def test_vllm_engine_key_builds_engines_with_make_vllm_engine(toy_cache, tmp_path, monkeypatch):
    """engine=vllm: the trainer asks r1_ref.vllm_engine.make_vllm_engine (faked here: no vLLM on CPU) for both engines,
    and pushes the policy once right away (the step-0 evaluation's level-2 sleep would otherwise leave nothing to push)."""
    import r1_ref.trainer as T, r1_ref.vllm_engine as V
    calls = []
    class Fake:
        def __init__(self, t, p): self.t, self.p = t, p
        def with_sampling(self, t, p): return Fake(t, p)
        def load_weights(self, model): calls.append(("load_weights", model))
    monkeypatch.setattr(V, "make_vllm_engine", lambda cfg, path, tok, t, p: calls.append((cfg.engine, path, t, p)) or Fake(t, p))
    cfg = T.load_config(overrides=[*TINY, f"toy_cache={toy_cache}", f"output_dir={tmp_path}", "engine=vllm", "temperature=0.9"])
    tr = T.GRPOTrainer(cfg)
    assert calls == [("vllm", tr.model_path, 0.9, 1.0), ("load_weights", tr.policy)]
    assert (tr.engine.t, tr.eval_engine.t, tr.eval_engine.p) == (0.9, cfg.eval_temperature, cfg.eval_top_p)


def test_lr_schedule_steps_when_no_group_is_informative(toy_cache, tmp_path):
    "Every reward weighted 0 + dynamic sampling: no group is informative, no update — yet step s runs at the step-s rate."
    from r1_ref.trainer import load_config, lr_lambda
    args = [*TINY, f"toy_cache={toy_cache}", "steps=4", "warmup_steps=2", "lr=1e-3", "dynamic_sampling=true",
            "reward_weights=[0.0,0.0]", "eval_split=null", "save_steps=4"]
    res = r1ref("train", *args, f"output_dir={tmp_path}/run")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = metrics(tmp_path / "run" / "metrics.jsonl")      # eval_split=null: no step-0 line (nothing to log)
    f = lr_lambda(load_config(overrides=args))
    assert [r["groups_kept"] for r in rows] == [0.0] * 4 and not any("loss" in r for r in rows)
    assert [r["lr"] for r in rows] == pytest.approx([1e-3 * f(s) for s in range(1, 5)])
    from safetensors.torch import load_file
    before, after = load_file(toy_cache / "base" / "model.safetensors"), load_file(tmp_path / "run" / "checkpoint-000004" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)      # no optimizer step on a zero gradient


def test_export_dtype_writes_a_bf16_model_and_keeps_fp32_checkpoints(toy_cache, tmp_path):
    "export_dtype=bfloat16: output_dir/final is bf16 (as hub checkpoints are); the checkpoints keep the fp32 masters."
    res = r1ref("train", *TINY, f"toy_cache={toy_cache}", "steps=1", "eval_split=null", "export_dtype=bfloat16",
                f"output_dir={tmp_path}/run")
    assert res.returncode == 0, res.stderr[-2000:]
    from safetensors.torch import load_file
    final, ck = load_file(tmp_path / "run" / "final" / "model.safetensors"), load_file(tmp_path / "run" / "checkpoint-000001" / "model.safetensors")
    assert {v.dtype for v in final.values()} == {torch.bfloat16} and {v.dtype for v in ck.values()} == {torch.float32}
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text())["dtype"] == "bfloat16"
    assert set(final) == set(ck) and all(torch.equal(final[k], ck[k].to(torch.bfloat16)) for k in final)


USER_REWARDS = """
def brevity(completions, **kwargs):                 # written for TRL's GRPOTrainer: keywords in, one float per completion
    return [-len(c) / 100 for c in completions]

def seen(prompts, completions, answer, completion_ids, **kwargs):   # the question, a dataset column and the token ids
    assert len(prompts) == len(completions) == len(answer) == len(completion_ids) and "+" in prompts[0]
    return [float(len(ids) > 0) for ids in completion_ids]
"""


def test_user_reward_module_from_config(toy_cache, tmp_path):
    "`rewards: [format, my_rewards:brevity, my_rewards:seen]` from the directory the user runs `r1-ref` in, TRL-style functions."
    (tmp_path / "my_rewards.py").write_text(USER_REWARDS)
    res = r1ref("train", *TINY, f"toy_cache={toy_cache}", "steps=1", "eval_split=null", "output_dir=run",
                "rewards=[format,my_rewards:brevity,my_rewards:seen]", "reward_weights=[1.0,0.5,0.0]", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    row = metrics(tmp_path / "run" / "metrics.jsonl")[-1]
    assert row["reward/brevity"] < 0 and row["reward/seen"] == 1.0 and "reward/format" in row
    assert row["reward"] == pytest.approx(row["reward/format"] + 0.5 * row["reward/brevity"])


def test_methods_live_on_the_classes_and_out_of_the_namespace():
    "Methods are @patch-ed onto their class: `from r1_ref.trainer import *` brings no `evaluate` or `train` along."
    import r1_ref.trainer as T, r1_ref.distill as D
    ns = {}
    exec("from r1_ref.trainer import *", ns)
    assert not {"evaluate", "train", "update", "train_step", "save_checkpoint"} & set(ns)
    assert D.SFTTrainer.train is T.GRPOTrainer.train is T.Trainer.train       # one loop for GRPO and SFT
    assert D.SFTTrainer.train_step is not T.GRPOTrainer.train_step


def test_log_with_sends_every_step_to_an_accelerate_tracker(toy_cache, tmp_path):
    "log_with: accelerate's trackers get the config once and every step's numbers, besides metrics.jsonl."
    from accelerate.tracking import GeneralTracker
    import r1_ref.trainer as T

    class Recorder(GeneralTracker):
        name, requires_logging_directory = "recorder", False
        def __init__(self): super().__init__(); self.config, self.rows = None, []
        @property
        def tracker(self): return self
        def store_init_configuration(self, values): self.config = values
        def log(self, values, step=None, **kw): self.rows.append((step, values))

    rec = Recorder()
    cfg = T.load_config(overrides=[*TINY, f"toy_cache={toy_cache}", "steps=2", f"output_dir={tmp_path}"])
    cfg.log_with = [rec]
    T.GRPOTrainer(cfg).train()
    assert rec.config["lr"] == cfg.lr and rec.config["group_size"] == 4
    assert [s for s, _ in rec.rows] == [0, 1, 2]
    assert "reward" in rec.rows[1][1] and all(isinstance(v, (int, float)) for _, m in rec.rows for v in m.values())
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_registered_engine_is_used_by_name(toy_cache, tmp_path):
    "One register_engine call makes a new rollout engine available to the config's `engine` key."
    import r1_ref.trainer as T
    from r1_ref.rollout import ENGINES, HFEngine, register_engine
    made = []
    class Counting(HFEngine):
        def generate(self, prompts, group_size=1):
            made.append(len(prompts) * group_size)
            return super().generate(prompts, group_size)
    register_engine("counting", lambda cfg, model, tok, path: Counting(model, tok, cfg.max_new_tokens, cfg.temperature))
    try:
        cfg = T.load_config(overrides=[*TINY, f"toy_cache={toy_cache}", "steps=1", "engine=counting", "eval_split=null",
                                       f"output_dir={tmp_path}"])
        T.GRPOTrainer(cfg).train()
    finally: ENGINES.pop("counting")
    assert made == [16]                                   # one step of 16 completions, no evaluation
    with pytest.raises(T.ConfigError, match="engine"):
        T.load_config(overrides=["engine=counting"])


def test_bad_input_files_and_offline_ids_get_one_line(tmp_path, toy_cache):
    "A YAML syntax error (exit 2: usage), a malformed data row, a hub dataset or model that cannot be reached offline."
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("lr: 1e-4\nsteps: [1, 2\n")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "1+1", "answer": "2"}\n{"prompt": "2+2", "answer": \n')
    offline = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    common = [f"toy_cache={toy_cache}", "toy_pretrain_steps=10", f"output_dir={tmp_path}/o"]
    cases = [(["train", str(bad_yaml)], 2, f"config file '{bad_yaml}' is not valid YAML at line 3"),
             (["train", f"dataset={rows}", "eval_split=null", *common], 1, f"data file '{rows}' line 2 is not valid JSON"),
             (["train", "dataset=nobody/nothing", *common], 1, "dataset 'nobody/nothing' cannot be loaded from the hub"),
             (["train", "model=nobody/nothing", *common], 1, "cannot load model 'nobody/nothing'")]
    for args, code, message in cases:
        res = r1ref(*args, timeout=180, env=offline)
        assert res.returncode == code and message in res.stderr, (args, res.returncode, res.stderr[-1500:])
        assert "Traceback" not in res.stderr and len([l for l in res.stderr.splitlines() if "error:" in l]) == 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("checkpoint-*"))   # nothing written


def test_second_trainer_with_another_precision_in_one_process():
    "A notebook that builds a fp32 trainer, then a bf16 one, gets both (accelerate's state is a process-wide singleton)."
    from types import SimpleNamespace
    from r1_ref.trainer import make_accelerator
    cfg = lambda mp: SimpleNamespace(fsdp=False, mixed_precision=mp, log_with=None, output_dir="runs/acc-test",
                                     dist_timeout_s=60)
    assert make_accelerator(cfg("no")).mixed_precision == "no"
    assert make_accelerator(cfg("bf16")).mixed_precision == "bf16"
    assert make_accelerator(cfg("no")).mixed_precision == "no"


@pytest.mark.parametrize("args,message", [
    (["toy_keep=[0,0]"], "config key 'toy_keep'"),
    (["toy_keep=[-1,2]"], "config key 'toy_keep'"),
    (["toy_retry=1.5"], "config key 'toy_retry'"),
])
def test_bad_partial_world_one_clear_error(args, message, tmp_path):
    res = r1ref("train", *args, f"output_dir={tmp_path}", timeout=120)
    assert res.returncode != 0 and message in res.stderr and "Traceback" not in res.stderr, res.stderr[-1500:]


def test_partial_world_preset_builds_its_own_base(tmp_path):
    "configs/toy_partial.yaml: the base is pretrained on partial solutions, cached under its own name, and trains."
    import r1_ref.toy as toy
    from r1_ref.trainer import load_config, resolve_model
    preset = Path(__file__).parents[1] / "configs" / "toy_partial.yaml"
    cfg = load_config(preset, [f"toy_cache={tmp_path}", "toy_pretrain_steps=2", "progress=false"])
    assert cfg.rewards == ["accuracy"] and len(cfg.toy_keep) == cfg.toy_digits and 0 < cfg.toy_retry < 1
    seen = []
    real = toy.toy_document
    toy.toy_document = lambda *a: seen.append(real(*a)) or seen[-1]
    try: path = Path(resolve_model(cfg))
    finally: toy.toy_document = real
    meta = json.loads((path / "toy.json").read_text())
    assert meta["keep"] == cfg.toy_keep and meta["retry"] == cfg.toy_retry
    thinking = [d for d in seen if "<think>" in d]
    assert thinking and all(" so " in d for d in thinking) and any("? wait " in d for d in thinking)
    worked = {d.split("</think>")[0].count("=") for d in thinking if "wait" not in d}
    assert worked == {1, 2, 3, 4}                        # columns worked before the guess: each of 1..4 appears
    res = r1ref("train", str(preset), f"toy_cache={tmp_path}", "toy_pretrain_steps=2", "steps=1", "batch_size=16",
                "toy_eval=8", "max_new_tokens=16", f"output_dir={tmp_path}/run", timeout=300)
    assert res.returncode == 0 and "pretrained the toy base model" not in res.stdout, res.stderr[-1500:]
