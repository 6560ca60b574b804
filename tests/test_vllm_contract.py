"""The vLLM engines against vLLM 0.33's contract: the CPU stand-in in tests/standin/vllm (written from vLLM 0.33's
source) refuses what vLLM refuses, and the trainer's real loop runs against it — evaluation first, several
mini-batches, FSDP2 on 2 gloo processes, tensor parallelism, server mode with 2 training processes. Each test names
the bug it covers (issue 16); each failed against the code before its fix."""
import json, os, socket, subprocess, sys, threading
from pathlib import Path
from types import SimpleNamespace as NS
import pytest
import torch
from hub_fixture import save_hub_model, write_gsm8k

ROOT, STANDIN = Path(__file__).parents[1], Path(__file__).parent / "standin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def env():
    pp = os.pathsep.join([str(STANDIN), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": pp, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONFAULTHANDLER": "1"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub")
    return {"qwen2": save_hub_model(d / "qwen2", "qwen2", think_prefill=False),
            "gsm8k": write_gsm8k(d / "gsm8k.jsonl", 16)}


def drop_vllm():
    for k in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]: del sys.modules[k]


@pytest.fixture
def standin(monkeypatch):
    "The stand-in as `vllm` in this process; the environment and `sys.modules` restored afterwards."
    saved = dict(os.environ)
    monkeypatch.syspath_prepend(str(STANDIN)); drop_vllm()
    import vllm
    assert vllm.STANDIN and vllm.__version__ == "0.33.0"
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"): os.environ.pop(k, None)
    vllm.EVENTS.clear()
    yield vllm
    drop_vllm(); os.environ.clear(); os.environ.update(saved)


def args(hub, out, *more):
    return [f"model={hub['qwen2']}", f"dataset={hub['gsm8k']}", "template=chat", "rewards=[format,accuracy]",
            "prompt_column=question", "answer_format=gsm8k",
            "exact_match=true", "batch_size=8", "group_size=4", "mini_batch_size=4", "micro_batch_size=2",
            "max_new_tokens=8", "steps=2", "save_steps=2", "eval_max=2", "eval_steps=0", "progress=false",
            "dist_timeout_s=120", f"output_dir={out}", *more]


# ------------------------------------------------------------------------------------------- the stand-in itself

def test_standin_enforces_sleep_wake_and_load_weights(standin, hub):
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    llm = standin.LLM(str(hub["qwen2"]), enable_sleep_mode=True, distributed_executor_backend="external_launcher")
    p, req = standin.SamplingParams(n=2, max_tokens=4, logprobs=0), [{"prompt_token_ids": [1, 2, 3]}]
    assert len(llm.generate(req, p)[0].outputs) == 2
    model = llm.llm_engine.model_executor.driver_worker.model_runner.model
    weights = [(n, t.detach().clone()) for n, t in model.hf.named_parameters()]
    llm.sleep(level=2)
    with pytest.raises(RuntimeError, match="asleep"): llm.generate(req, p)
    with pytest.raises(RuntimeError, match="wake_up"): model.load_weights(weights=weights)
    llm.wake_up(tags=["weights"]); llm.wake_up(tags=["kv_cache"])
    with pytest.raises(RuntimeError, match="discarded"): llm.generate(req, p)      # level 2: weights are garbage
    model.load_weights(weights=weights[:1])
    with pytest.raises(RuntimeError, match="discarded"): llm.generate(req, p)      # ... until all are loaded
    model.load_weights(weights=weights)
    assert llm.generate(req, p)
    with pytest.raises(KeyError): model.load_weights(weights=[("model.nope.weight", weights[0][1])])
    with pytest.raises(RuntimeError, match="plain tensors"):
        model.load_weights(weights=[(weights[0][0], torch.nn.Parameter(weights[0][1]))])
    with pytest.raises(TypeError, match="unexpected"): standin.SamplingParams(n=1, best_of=2)
    with pytest.raises(ValueError, match="top_p"): standin.SamplingParams(top_p=0.0)


def test_standin_nccl_group_has_one_rank_0(standin):
    from vllm.distributed.utils import StatelessProcessGroup
    port = free_port()
    pg = StatelessProcessGroup.create("127.0.0.1", port, rank=0, world_size=2)
    with pytest.raises(Exception, match="(?i)address already in use|EADDRINUSE|bind"):
        StatelessProcessGroup.create("127.0.0.1", port, rank=0, world_size=2)
    assert pg.rank == 0


# ------------------------------------------------------------------------------------------- single process

def test_bug1_colocated_train_with_evaluation_first(standin, hub, tmp_path):
    "Bug 1: train() evaluates at step 0; the level-2 sleep after it discarded the weights before any were pushed."
    import r1_ref.trainer as T
    from r1_ref.vllm_engine import _vllm_model
    tr = T.GRPOTrainer(T.load_config(overrides=args(hub, tmp_path / "run", "engine=vllm")))
    log = tr.train()
    assert [r["step"] for r in log] == [0, 1, 2] and "eval/reward" in log[0]
    assert all(r["optimizer_steps"] == 2 for r in log[1:] if "loss" in r)          # two mini-batches per step
    assert all(0 < r["tis_weight"] <= 2 for r in log[1:] if "tis_weight" in r)
    kinds = [e[0] for e in standin.EVENTS]
    assert kinds.count("sleep") == kinds.count("generate") == 4                       # eval, 2 rollouts, final eval
    tr.engine._wake()                                                                  # as the next rollout would
    vm = _vllm_model(tr.engine.state.llm).hf
    for n, p in vm.named_parameters():                                                 # vLLM holds the trained policy
        assert torch.equal(p, dict(tr.policy.named_parameters())[n].detach().to(p.dtype)), n


def test_bug7_top_p_below_1_refused_with_vllm_engines():
    "Bug 7: vLLM's processed log-probs are renormalised over the nucleus; TIS weights would be biased."
    from r1_ref.trainer import ConfigError, GRPOConfig, check_config
    for engine in ("vllm", "vllm_server"):
        with pytest.raises(ConfigError, match="top_p"): check_config(GRPOConfig(engine=engine, top_p=0.95), world=1)
        check_config(GRPOConfig(engine=engine, top_p=1.0, eval_top_p=0.95), world=1)   # evaluation has no weights
    check_config(GRPOConfig(engine="hf", top_p=0.95), world=1)


def test_bug8_max_model_len_passed(standin, hub):
    "Bug 8: without max_model_len vLLM sizes the engine for the whole context (131,072 tokens for Qwen2.5)."
    from transformers import AutoTokenizer
    from r1_ref.vllm_engine import make_vllm_engine
    tok = AutoTokenizer.from_pretrained(hub["qwen2"])
    e = make_vllm_engine(NS(engine="vllm", max_new_tokens=8, seed=0), str(hub["qwen2"]), tok, 1.0, 1.0)
    assert e.state.llm.kw["max_model_len"] == 8 + 1024
    cfg = NS(engine="vllm", max_new_tokens=8, seed=0, vllm_max_model_len=300)
    e = make_vllm_engine(cfg, str(hub["qwen2"]), tok, 1.0, 1.0)
    assert e.state.llm.kw["max_model_len"] == 300


def test_bug8_moe_weight_sync_refused():
    "Bug 8: transformers 5 fuses MoE experts on load; the names no longer match what vLLM's load_weights looks up."
    from transformers import AutoConfig, AutoModelForCausalLM
    from r1_ref.vllm_engine import vllm_named_params
    cfg = AutoConfig.for_model("qwen2_moe", vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=1, num_experts=2, moe_intermediate_size=8,
                               shared_expert_intermediate_size=8)
    moe = AutoModelForCausalLM.from_config(cfg)
    with pytest.raises(NotImplementedError, match="qwen2_moe"): next(vllm_named_params(moe))


def test_bug8_vllm_extra_pinned_to_033():
    "Bug 8: the extra names the release the code was written against."
    import tomllib
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["vllm"]
    assert spec == ["vllm>=0.33,<0.34"]


def test_bug8_slurm_script_keeps_arguments_whole(tmp_path):
    "Bug 8: `$*` inside `bash -c \"...\"` re-split `system_prompt=Think step by step` into four arguments."
    bin_ = tmp_path / "bin"; bin_.mkdir()
    stubs = {"srun": 'shift; exec "$@"',                       # drop --kill-on-bad-exit, run the node command here
             "scontrol": "echo node1", "nvidia-smi": "echo GPU0; echo GPU1",
             "torchrun": 'for a in "$@"; do printf "%s\\n" "$a"; done > "$ARGS_OUT"',
             "accelerate": 'for a in "$@"; do printf "%s\\n" "$a"; done > "$ARGS_OUT"'}
    for name, body in stubs.items():
        (bin_ / name).write_text(f"#!/bin/bash\n{body}\n"); (bin_ / name).chmod(0o755)
    for launcher in ("torchrun", "accelerate"):
        out = tmp_path / f"{launcher}.txt"
        e = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "ARGS_OUT": str(out), "LAUNCHER": launcher,
             "SLURM_JOB_NODELIST": "node1", "SLURM_JOB_ID": "7", "SLURM_NODEID": "0"}
        r = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_r1.sh"), "configs/x.yaml",
                            "system_prompt=Think step by step", "steps=3"],
                           capture_output=True, text=True, env=e, cwd=ROOT, timeout=60)
        assert r.returncode == 0, r.stderr
        got = out.read_text().splitlines()
        assert got[-3:] == ["configs/x.yaml", "system_prompt=Think step by step", "steps=3"], got
        assert "--node_rank" not in got or got[got.index("--node_rank") + 1] == "0"


# ------------------------------------------------------------------------------------------- 2 processes (gloo)

WORKER = r'''
import json, sys, torch
import vllm, r1_ref.trainer as T
from r1_ref.vllm_engine import _vllm_model
out, *overrides = sys.argv[1:]
tr = T.GRPOTrainer(T.load_config(overrides=overrides))
log = tr.train()
res = {"log": log, "llm": [e for e in vllm.EVENTS if e[0] == "LLM"], "sharded": tr.sharded}
full = tr.full_state_dict(everywhere=True)
if tr.cfg.engine == "vllm":
    tr.engine._wake()     # asleep after the final evaluation: the next rollout would push the policy again
    vm = _vllm_model(tr.engine.state.llm).hf
    res["mismatch"] = [n for n, p in vm.named_parameters() if not torch.equal(p, full[n].to(p.dtype))]
json.dump(res, open(f"{out}-{tr.acc.process_index}.json", "w"))
'''


def launch(tmp_path, overrides, timeout=420):
    w = tmp_path / "worker.py"; w.write_text(WORKER)
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           str(w), str(tmp_path / "res"), *overrides]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-5000:]
    return [json.loads((tmp_path / f"res-{i}.json").read_text()) for i in range(2)]


def check_log(log):
    assert [r["step"] for r in log] == [0, 1, 2] and "eval/reward" in log[0]
    assert all(r["optimizer_steps"] == 2 for r in log[1:] if "loss" in r)


def test_bugs_3_4_colocated_fsdp2_on_two_processes(hub, tmp_path):
    "Bugs 3, 4: WORLD_SIZE 2 with TP 1 (one engine per process, seeds seed + rank); FSDP2 DTensors gathered whole."
    res = launch(tmp_path, args(hub, tmp_path / "run", "engine=vllm", "fsdp=true", "seed=5"))
    for rank, r in enumerate(res):
        assert r["sharded"] and r["mismatch"] == [] and r["llm"] == [["LLM", rank, 5 + rank]]
        check_log(r["log"])


def test_bug5_colocated_tensor_parallel_group_sends_identical_requests(hub, tmp_path):
    "Bug 5: TP 2 over 2 processes: one engine, both ranks submit the gathered prompts, each keeps its slice."
    res = launch(tmp_path, args(hub, tmp_path / "run", "engine=vllm", "vllm_tensor_parallel_size=2", "seed=5"))
    for rank, r in enumerate(res):
        assert r["mismatch"] == [] and r["llm"] == [["LLM", rank, 5]]
        check_log(r["log"])
    assert res[0]["log"][1]["reward"] == res[1]["log"][1]["reward"]     # the gathered step is the same on both


def test_bug2_server_with_two_training_processes(standin, hub, tmp_path):
    "Bugs 2, 3: only the main process opens the NCCL group (one rank 0) and sends whole FSDP2 parameters."
    from r1_ref.vllm_engine import make_server
    llm = standin.LLM(str(hub["qwen2"]), worker_extension_cls="r1_ref.vllm_engine.WeightSyncExtension")
    server = make_server(llm, "127.0.0.1", 0, world_size=1, sampling_cls=standin.SamplingParams)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        launch(tmp_path, args(hub, tmp_path / "run", "engine=vllm_server", "fsdp=true",
                              f"vllm_server_port={server.server_address[1]}"))
    finally:
        server.shutdown(); server.server_close()
    from safetensors.torch import load_file
    ck = load_file(tmp_path / "run" / "checkpoint-000002" / "model.safetensors")
    vm = llm.llm_engine.model_executor.driver_worker.model_runner.model.hf
    for n, p in vm.named_parameters(): assert torch.equal(p, ck[n].to(p.dtype)), n       # the server has the policy
    loads = [e for e in standin.EVENTS if e[0] == "load_weights"]
    assert len(loads) == 3 * len(list(vm.parameters()))       # pushed at start and after each step, each parameter once
