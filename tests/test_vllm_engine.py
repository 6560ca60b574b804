"vLLM engines: the pure-Python parts on CPU (fakes stand in for vLLM), and one end-to-end GPU test that needs vLLM + CUDA."
import copy, socket, subprocess, sys, threading
from types import SimpleNamespace as NS
import pytest
import torch
from r1_ref.rollout import _stop_ids
from r1_ref.toy import build_model, build_tokenizer
from r1_ref.vllm_engine import (VLLMEngine, VLLMServerEngine, _engine_state, _import_vllm, _request, _vllm_model,
                                make_server, make_vllm_engine, pad_logps, param_metadata, rollout_from_outputs,
                                sampling_kwargs, tis_weights, vllm_named_params)

try:
    import vllm  # noqa: F401
    HAS_VLLM = True
except ImportError:
    HAS_VLLM = False


@pytest.fixture(scope="module")
def tok(): return build_tokenizer()


@pytest.fixture(scope="module")
def tiny(tok): return build_model(tok, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64)


def fake_outputs(prompt_ids, n):
    "What `LLM.generate` returns, prompt-major: the last completion of each prompt hit the length limit."
    mk = lambda ids, reason: NS(token_ids=ids, text="?", finish_reason=reason, logprobs=[{t: NS(logprob=-0.5)} for t in ids])
    return [NS(prompt_token_ids=p, outputs=[mk([20 + j, 21 + j], "length" if j == n - 1 else "stop") for j in range(n)])
            for p in prompt_ids]


# ---------------------------------------------------------------- CPU: no vLLM needed

@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed")
def test_missing_vllm_gives_install_hint(tok):
    with pytest.raises(ImportError, match=r'pip install "r1-ref\[vllm\]"'): _import_vllm()
    with pytest.raises(ImportError, match="CUDA"): make_vllm_engine(NS(engine="vllm"), "m", tok, 1.0, 1.0)


def test_unknown_engine_name(tok):
    with pytest.raises(ValueError, match="'vllm' or 'vllm_server'"): make_vllm_engine(NS(engine="sglang"), "m", tok, 1.0, 1.0)


def test_sampling_kwargs_ask_for_sampled_logprob(tok):
    eos, strings = _stop_ids(tok, ("</answer>",))
    kw = sampling_kwargs(4, 32, 0.6, 0.95, eos, strings)
    assert (kw["n"], kw["logprobs"], kw["top_k"], kw["stop_token_ids"], kw["stop"]) == (4, 0, 0, eos, [])
    assert kw["include_stop_str_in_output"]


def test_rollout_from_outputs(tok):
    outs = fake_outputs([[5, 6], [7]], 2)
    ro = rollout_from_outputs(outs, [[5, 6], [7]], 2, tok)
    assert ro.prompt_ids == [[5, 6], [5, 6], [7], [7]] and ro.group_size == 2
    assert ro.completion_ids == [[20, 21], [21, 22], [20, 21], [21, 22]]
    assert ro.truncated == [False, True, False, True]
    assert ro.logps == [[-0.5, -0.5]] * 4
    assert ro.completions == tok.batch_decode(ro.completion_ids, skip_special_tokens=True)
    with pytest.raises(ValueError, match="group_size 3"): rollout_from_outputs(outs, [[5, 6], [7]], 3)


def test_named_params_tied_embeddings(tiny, tok):
    named = list(vllm_named_params(tiny))
    assert not any(n.startswith("lm_head") for n, _ in named)        # tied: sent once, as the embedding
    assert param_metadata(named)[0] == ("model.embed_tokens.weight", "float32", [len(tok), 32])
    assert not any(t.requires_grad for _, t in named)


def test_tis_weights_by_hand():
    old = torch.log(torch.tensor([[0.5, 0.8, 0.5, 0.05, 0.9]]))
    vl = torch.log(torch.tensor([[0.5, 0.4, 0.1, 0.1, 0.3]]))
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    w, stats = tis_weights(old, vl, mask, cap=2.0)
    assert torch.allclose(w, torch.tensor([[1.0, 2.0, 2.0, 0.5, 0.0]]), atol=1e-5)
    assert stats["tis/clip_frac"] == 0.25 and abs(stats["tis/ratio_max"] - 5.0) < 1e-4
    assert torch.allclose(tis_weights(old, torch.full_like(old, float("nan")), mask)[0], mask.float())
    assert torch.equal(pad_logps([[-1.0, -2.0], [-3.0]], 3), torch.tensor([[-1.0, -2.0, 0.0], [-3.0, 0.0, 0.0]]))


class FakeLLM:
    "Enough of `vllm.LLM` for both engines: generate, sleep/wake, collective_rpc, a model with load_weights."
    def __init__(self, model=None):
        self.calls = []
        if model is not None:
            params = dict(model.named_parameters())
            model.load_weights = lambda weights: [params[n].data.copy_(t) for n, t in weights]
        self.llm_engine = NS(model_executor=NS(driver_worker=NS(model_runner=NS(model=model))))
    def generate(self, prompts, params, use_tqdm=False):
        self.calls.append(("generate", params.n)); return fake_outputs([p["prompt_token_ids"] for p in prompts], params.n)
    def sleep(self, level): self.calls.append(("sleep", level))
    def wake_up(self, tags): self.calls.append(("wake", tuple(tags)))
    def reset_prefix_cache(self): self.calls.append(("reset",))
    def collective_rpc(self, method, args=()): self.calls.append((method, args)); return [None]


def test_colocated_engine_sleeps_and_repushes(tok, tiny):
    e = object.__new__(VLLMEngine)
    e.tok, e.max_new_tokens, e.temperature, e.top_p, e.sampling_cls = tok, 8, 1.0, 1.0, NS
    e.eos_ids, e.stop_strings = _stop_ids(tok, ("</answer>",))
    e.state = _engine_state(FakeLLM(copy.deepcopy(tiny)), sleep=True, level=2)
    ev = e.with_sampling(0.6, 0.95)
    assert len(e.generate(["1+2"], 2)) == 2
    policy = copy.deepcopy(tiny)
    with torch.no_grad(): policy.model.norm.weight.add_(1.0)
    e.load_weights(policy)
    ev.generate(["1+2"], 1)
    e.generate(["1+2"], 2)   # the level-2 sleep after evaluation discarded the weights: pushed again
    assert [c[0] for c in e.state.llm.calls] == ["generate", "sleep", "wake", "reset", "wake", "generate", "sleep",
                                                 "wake", "reset", "wake", "generate", "sleep"]
    assert torch.equal(_vllm_model(e.state.llm).model.norm.weight.detach(), policy.model.norm.weight.detach())
    assert ev.state is e.state and (ev.temperature, e.temperature) == (0.6, 1.0)


def test_server_protocol_round_trip(tok, tiny):
    fake = FakeLLM()
    server = make_server(fake, "127.0.0.1", 0, world_size=2, sampling_cls=NS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = VLLMServerEngine(tok, "127.0.0.1", server.server_address[1], max_new_tokens=8, timeout=10)
        ro = client.with_sampling(0.6, 0.95).generate(["1+2", "3+4"], group_size=3)
        ids = tok(["1+2", "3+4"], add_special_tokens=False)["input_ids"]
        assert ro.prompt_ids == [p for p in ids for _ in range(3)]
        assert ro.truncated == [False, False, True] * 2 and fake.calls[-1] == ("generate", 3)
        assert _request(client.url + "/world_size") == {"world_size": 2}
        meta = param_metadata(list(vllm_named_params(tiny))[:2])
        _request(client.url + "/update_weights", {"params": meta})
        assert fake.calls[-2:] == [("r1_update_weights", ([tuple(m) for m in meta],)), ("reset",)]
        with pytest.raises(RuntimeError, match="404"): _request(client.url + "/nope", {})
        with pytest.raises(RuntimeError, match="KeyError"): _request(client.url + "/generate", {"prompt_ids": [[1]]})
    finally:
        server.shutdown(); server.server_close()


def test_missing_server_says_how_to_start_one(tok):
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match="r1_ref.vllm_engine serve"): VLLMServerEngine(tok, "127.0.0.1", port, timeout=0.5)


def test_module_runs_as_server_command():
    r = subprocess.run([sys.executable, "-m", "r1_ref.vllm_engine", "serve", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--tensor-parallel-size" in r.stdout


# ---------------------------------------------------------------- GPU: vLLM + CUDA (skipped elsewhere)

def hf_logps(model, ro) -> list[list[float]]:
    "The trainer's log-probs of each sampled completion token (full forward pass, temperature 1)."
    out = []
    for p, c in zip(ro.prompt_ids, ro.completion_ids):
        ids = torch.tensor([p + c], device="cuda")
        with torch.no_grad(): lp = model(ids).logits[0, len(p) - 1:-1].float().log_softmax(-1)
        out.append(lp.gather(1, ids[0, len(p):, None])[:, 0].tolist())
    return out


def tis_stats(model, ro):
    width = max(len(c) for c in ro.completion_ids)
    mask = pad_logps([[1.0] * len(c) for c in ro.completion_ids], width)
    return tis_weights(pad_logps(hf_logps(model, ro), width), pad_logps(ro.logps, width), mask)[1]


@pytest.mark.cuda
def test_colocated_vllm_generate_and_load_weights(tmp_path, tok):
    pytest.importorskip("vllm")
    if not torch.cuda.is_available(): pytest.skip("needs a CUDA GPU")
    model = build_model(tok)
    tok.save_pretrained(tmp_path); model.save_pretrained(tmp_path)
    # float32 on both sides so that only kernels differ; if the installed vLLM has no float32 attention backend,
    # use dtype="bfloat16" and widen the tolerances below (bf16 sampling against an fp32 trainer differs more)
    eng = VLLMEngine(str(tmp_path), tok, max_new_tokens=16, gpu_memory_utilization=0.2, dtype="float32", enforce_eager=True)
    prompts = ["12+34", "5+6"]
    ro = eng.generate(prompts, 4)
    assert len(ro) == 8 and all(len(l) == len(c) for l, c in zip(ro.logps, ro.completion_ids))
    model = model.cuda()
    same = tis_stats(model, ro)                 # vLLM and the trainer hold the same weights: weights ≈ 1
    assert abs(same["tis/ratio_mean"] - 1) < 0.02 and same["tis/logp_diff_max"] < 0.1, same
    policy = copy.deepcopy(model)
    with torch.no_grad():
        for p in policy.parameters(): p.add_(0.05 * torch.randn_like(p))
    eng.load_weights(policy)                    # after a level-2 sleep: wake the weights' memory, push
    ro2 = eng.generate(prompts, 4)
    new, old = tis_stats(policy, ro2), tis_stats(model, ro2)
    assert abs(new["tis/ratio_mean"] - 1) < 0.02, new                    # vLLM now samples from the pushed weights
    assert old["tis/logp_diff_mean"] > 5 * new["tis/logp_diff_mean"], (old, new)  # and no longer from the old ones


def test_launcher_env_allows_a_multiple_of_the_tp_size(monkeypatch):
    "Colocated vLLM: one engine per TP group, so WORLD_SIZE must be a multiple of tensor_parallel_size (issue 16, bug 4)."
    from r1_ref.vllm_engine import _launcher_env
    for k, v in dict(RANK="3", LOCAL_RANK="3", WORLD_SIZE="4", MASTER_ADDR="127.0.0.1", MASTER_PORT="1").items():
        monkeypatch.setenv(k, v)
    assert _launcher_env(1) == 3 and _launcher_env(2) == 3 and _launcher_env(4) == 3
    with pytest.raises(ValueError, match="multiple"): _launcher_env(3)
