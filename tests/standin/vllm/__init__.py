"""A CPU stand-in for vLLM 0.33.0, written from its source (the wheel's `vllm/`), enforcing the contract our engines
rely on.

Not a simulator of vLLM's speed or kernels: it loads the checkpoint with transformers and samples token by token, but it
*refuses* what vLLM 0.33 refuses or silently corrupts, and it raises where the real thing would hang:

- sleep/wake (entrypoints/llm.py:839-872, v1/engine/core.py:1006-1055, v1/worker/gpu_worker.py:301-357): `sleep(1)`
  keeps a CPU copy of the weights, `sleep(2)` discards them; scheduling resumes only when weights *and* KV cache are
  awake; after a level-2 sleep the weights are garbage until every parameter has been loaded again;
- `model.load_weights` (models/qwen2.py:519, model_loader/weight_utils.py:1538-1543): checkpoint names only, equal
  shapes, plain tensors (a DTensor fails in `param.data.copy_`), never into memory that is asleep;
- the external launcher (v1/executor/uniproc_executor.py:160-200, distributed/parallel_state.py:2149-2164): RANK,
  LOCAL_RANK, MASTER_ADDR/PORT in the environment, WORLD_SIZE a multiple of tensor_parallel_size, consecutive ranks
  form a TP group, and every rank of a TP group must submit identical requests;
- `StatelessProcessGroup.create` (distributed/utils.py:537-582): rank 0 hosts the TCP store, so a second rank 0 on the
  same port fails; `PyNcclCommunicator.broadcast` (device_communicators/pynccl.py:543-567) sends `data_ptr()` bytes:
  a DTensor (pointer 0) or a non-contiguous tensor is refused; the transport here is the TCP store;
- `SamplingParams` (sampling_params.py:285-700): unknown keywords and out-of-range values raise;
  `logprobs_mode="processed_logprobs"`: log-probs after temperature and top-p (renormalised over the nucleus).
"""
import copy, importlib, os
from types import SimpleNamespace as NS
import torch

__version__ = "0.33.0"
STANDIN = True
_FIELDS = ("n presence_penalty frequency_penalty repetition_penalty temperature top_p top_k min_p seed stop "
           "stop_token_ids ignore_eos max_tokens min_tokens logprobs prompt_logprobs detokenize skip_special_tokens "
           "spaces_between_special_tokens include_stop_str_in_output").split()
_DEFAULTS = dict(n=1, presence_penalty=0.0, frequency_penalty=0.0, repetition_penalty=1.0, temperature=1.0, top_p=1.0,
                 top_k=0, min_p=0.0, seed=None, stop=None, stop_token_ids=None, ignore_eos=False, max_tokens=16,
                 min_tokens=0, logprobs=None, prompt_logprobs=None, detokenize=True, skip_special_tokens=True,
                 spaces_between_special_tokens=True, include_stop_str_in_output=False)


class SamplingParams:
    "vLLM's `SamplingParams`: only its field names, with its range checks (`_verify_args`)."
    def __init__(self, **kw):
        bad = set(kw) - set(_FIELDS)
        if bad: raise TypeError(f"SamplingParams got unexpected keyword arguments {sorted(bad)}")
        for k, v in {**_DEFAULTS, **kw}.items(): setattr(self, k, v)
        self.stop = list(self.stop or []); self.stop_token_ids = list(self.stop_token_ids or [])
        if self.n < 1: raise ValueError(f"n must be at least 1, got {self.n}.")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0: raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if not isinstance(self.top_k, int) or self.top_k < -1:
            raise ValueError(f"top_k must be 0 (disable), or at least 1, got {self.top_k}")
        if self.max_tokens is not None and self.max_tokens < 1: raise ValueError("max_tokens must be at least 1")
        if self.logprobs is not None and self.logprobs < 0: raise ValueError("logprobs must be non-negative")

    def key(self): return tuple((k, repr(getattr(self, k))) for k in _FIELDS)


_ENGINE_ARGS = {"model", "tensor_parallel_size", "seed", "gpu_memory_utilization", "enable_sleep_mode",
                "distributed_executor_backend", "logprobs_mode", "worker_extension_cls", "max_model_len", "dtype",
                "enforce_eager", "tokenizer", "trust_remote_code", "max_num_seqs", "enable_prefix_caching"}
EVENTS = []            # what every LLM in this process did, in order (tests read it)


class _Model(torch.nn.Module):
    "vLLM's model object: `load_weights` takes checkpoint names (qwen2.py:519 via weight_utils.py:1538)."
    def __init__(self, hf, state):
        super().__init__(); self.hf, self.st = hf, state
        self.tied = bool(getattr(hf.config, "tie_word_embeddings", False))
        self.names = {n for n, _ in hf.named_parameters() if not (self.tied and n.startswith("lm_head."))}

    @torch.no_grad()
    def load_weights(self, weights):
        "Copy `(name, tensor)` pairs into the model; returns the names loaded."
        if "weights" in self.st.asleep:
            raise RuntimeError("load_weights into weight memory released by sleep(): CUDA error: an illegal memory "
                               "access (call llm.wake_up(tags=['weights']) first)")
        params, done = dict(self.hf.named_parameters()), set()
        for name, t in weights:
            if self.tied and name.startswith("lm_head."): continue         # qwen2.py skips a tied lm_head
            if name not in params: raise KeyError(name)                      # params_dict[name]
            if type(t) is not torch.Tensor:
                raise RuntimeError(f"{name}: aten.copy_.default: got mixed torch.Tensor and {type(t).__name__}! "
                                   "(vLLM loads plain tensors only)")
            p = params[name]
            if p.shape != t.shape:
                raise AssertionError(f"Attempted to load weight ({t.size()}) into parameter ({p.size()})")
            p.data.copy_(t); done.add(name)
        self.st.loaded |= done
        if self.st.loaded >= self.names: self.st.weights_valid = True
        EVENTS.append(("load_weights", len(done)))
        return done


class _Worker:
    "The one worker of an in-process engine (external launcher) or of the server; `worker_extension_cls` is mixed in."
    def __init__(self, model):
        self.device, self.model_runner, self.rank = torch.device("cpu"), NS(model=model), 0


def _tp_groups(tp):
    "Consecutive ranks form a TP group (parallel_state.py:2149-2170); every rank creates every group, in order."
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    groups = [torch.distributed.new_group(list(range(s, s + tp))) for s in range(0, world, tp)]
    return groups[rank // tp]


class LLM:
    "vLLM's offline `LLM`, on CPU, with the contract described in the module docstring."
    def __init__(self, model, **kw):
        bad = set(kw) - _ENGINE_ARGS
        if bad: raise TypeError(f"EngineArgs.__init__() got unexpected keyword arguments {sorted(bad)}")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        self.kw, self.tp = dict(kw), kw.get("tensor_parallel_size", 1)
        self.seed, self.max_model_len = kw.get("seed", 0), kw.get("max_model_len")
        self.sleep_enabled, self.tp_group = kw.get("enable_sleep_mode", False), None
        if kw.get("distributed_executor_backend") == "external_launcher":
            env = {k: os.environ[k] for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}  # KeyError as vLLM
            world = int(os.environ.get("WORLD_SIZE", 1))
            if world % self.tp:
                raise RuntimeError(f"shape '[-1, 1, 1, 1, {self.tp}]' is invalid for input of size {world}")
            if world > 1 and not torch.distributed.is_initialized():
                raise RuntimeError("external launcher with WORLD_SIZE > 1 needs the launcher's process group")
            self.rank = int(env["RANK"])
            if self.tp > 1: self.tp_group = _tp_groups(self.tp)
        elif self.tp > 1: raise NotImplementedError("the stand-in simulates one worker per LLM")
        else: self.rank = 0
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        hf = AutoModelForCausalLM.from_pretrained(model, dtype="auto").eval()   # vLLM: dtype "auto" = as stored
        self.max_model_len = self.max_model_len or hf.config.max_position_embeddings
        self.state = NS(asleep=set(), weights_valid=True, loaded=set(), cpu_copy=None)
        ext = kw.get("worker_extension_cls")
        cls = _Worker
        if ext:
            mod, name = ext.rsplit(".", 1)
            cls = type("WorkerWithExtension", (_Worker, getattr(importlib.import_module(mod), name)), {})
        self.worker = cls(_Model(hf, self.state))
        self.llm_engine = NS(model_executor=NS(driver_worker=NS(model_runner=self.worker.model_runner)))
        self.gen = torch.Generator().manual_seed(self.seed)
        EVENTS.append(("LLM", self.rank, self.seed))

    def sleep(self, level=1, mode="abort"):
        if not self.sleep_enabled: raise AssertionError("Sleep mode is not enabled in the model config")
        m = self.worker.model_runner.model
        if level == 1: self.state.cpu_copy = {n: p.detach().clone() for n, p in m.hf.named_parameters()}
        if level >= 1:
            with torch.no_grad():
                for p in m.hf.parameters(): p.fill_(float("nan"))              # the GPU memory is gone
            self.state.asleep = {"weights", "kv_cache"}
        if level == 2: self.state.weights_valid, self.state.loaded = False, set()
        EVENTS.append(("sleep", level))

    def wake_up(self, tags=None):
        tags = ["weights", "kv_cache"] if tags is None else list(tags)
        if set(tags) - {"weights", "kv_cache", "scheduling"}: raise ValueError(f"unknown tags {tags}")
        if "weights" in tags and "weights" in self.state.asleep:
            if self.state.cpu_copy is not None:                                 # level 1: restored from the CPU copy
                with torch.no_grad():
                    for n, p in self.worker.model_runner.model.hf.named_parameters(): p.copy_(self.state.cpu_copy[n])
                self.state.cpu_copy = None
        self.state.asleep -= set(tags)
        EVENTS.append(("wake", tuple(tags)))
        return not self.state.asleep

    def reset_prefix_cache(self, reset_running_requests=False, reset_connector=False):
        EVENTS.append(("reset_prefix_cache",)); return True

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        return [getattr(self.worker, method)(*args, **(kwargs or {}))]

    @torch.no_grad()
    def generate(self, prompts, sampling_params=None, use_tqdm=True, **kw):
        if self.state.asleep:
            raise RuntimeError(f"generate() while {sorted(self.state.asleep)} asleep: scheduling resumes only when "
                               "fully awake (core.py:1041-1055); the real engine would wait forever")
        if not self.state.weights_valid:
            raise RuntimeError("generate() after sleep(level=2) discarded the weights and before all were loaded "
                               "again: the model would sample from garbage")
        p = sampling_params or SamplingParams()
        if not isinstance(p, SamplingParams): raise TypeError("sampling_params must be SamplingParams")
        ids = [list(x["prompt_token_ids"]) for x in prompts]
        if self.tp_group is not None:
            mine, parts = (ids, p.key()), [None] * torch.distributed.get_world_size(self.tp_group)
            torch.distributed.all_gather_object(parts, mine, group=self.tp_group)
            if any(x != parts[0] for x in parts):
                raise RuntimeError("ranks of one tensor-parallel group submitted different requests: the external "
                                   "launcher requires identical prompts and SamplingParams (uniproc_executor.py:170)")
        for x in ids:
            if len(x) >= self.max_model_len:
                raise ValueError(f"The decoder prompt (length {len(x)}) is longer than the maximum model length of "
                                 f"{self.max_model_len}.")
        EVENTS.append(("generate", len(ids), p.n))
        return [NS(prompt_token_ids=x, outputs=self._sample(x, p)) for x in ids]

    def _sample(self, prompt, p):
        hf, n = self.worker.model_runner.model.hf, p.n
        seqs, lps, done, reasons = [[] for _ in range(n)], [[] for _ in range(n)], [False] * n, ["length"] * n
        stops = set(p.stop_token_ids) | ({self.tokenizer.eos_token_id} if not p.ignore_eos else set())
        limit = min(p.max_tokens or 16, self.max_model_len - len(prompt))
        for _ in range(limit):
            live = [i for i in range(n) if not done[i]]
            if not live: break
            x = torch.tensor([prompt + seqs[i] for i in live])
            logits = hf(input_ids=x).logits[:, -1].float() / max(p.temperature, 1e-5)
            if p.top_p < 1:                                            # the nucleus, renormalised (processed log-probs)
                srt, idx = logits.sort(-1, descending=True)
                cut = srt.softmax(-1).cumsum(-1) - srt.softmax(-1) >= p.top_p
                logits = logits.scatter(-1, idx, srt.masked_fill(cut, float("-inf")))
            logp = logits.log_softmax(-1)
            tok = torch.multinomial(logp.exp(), 1, generator=self.gen)[:, 0]
            for j, i in enumerate(live):
                t = int(tok[j]); seqs[i].append(t); lps[i].append({t: NS(logprob=float(logp[j, t]), rank=1)})
                text = self.tokenizer.decode(seqs[i])
                if t in stops or any(s in text for s in p.stop): done[i], reasons[i] = True, "stop"
        return [NS(index=i, token_ids=seqs[i], text=self.tokenizer.decode(seqs[i], skip_special_tokens=True),
                   logprobs=lps[i] if p.logprobs is not None else None, finish_reason=reasons[i],
                   cumulative_logprob=None)
                for i in range(n)]
