"""Tiny random models saved exactly the way hub checkpoints look on disk (no pytest needed here).

Real checkpoints differ from the fp32 toy model in ways that break training code: bf16 weights and `"dtype": "bfloat16"`
in config.json, a vocabulary padded beyond the tokenizer (Qwen2.5: 151,665 tokens, 151,936 rows), a byte-level BPE
tokenizer in which `<think>` / `</answer>` are several tokens, a Jinja chat template, several EOS ids in
generation_config.json (plus sampling defaults), and, for Llama, no pad token. `save_hub_model` writes all of it:

    path = save_hub_model(tmp / "qwen", "qwen2")            # tied embeddings, like Qwen2.5-0.5B-Instruct
    path = save_hub_model(tmp / "llama", "llama")           # untied, Llama-3.1-Instruct's special tokens, no pad token
    write_gsm8k(tmp / "gsm8k.jsonl", 16)                    # {"question", "answer": "...\\n#### 42"} rows
    rig_text(save_hub_model(tmp / "t", "qwen2", tied=False), after, "<think>..</think><answer>42</answer>", eos)  # a "teacher"
"""
from __future__ import annotations
import json, random
from pathlib import Path

TAGS = ("<think>", "</think>", "<answer>", "</answer>")

# Qwen2.5's and Llama-3's pre-tokenizer regexes (from their tokenizer.json): punctuation is split from letters, so a
# tag like `</answer>` becomes several tokens ("</", "answer", ">") however often the corpus repeats it.
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
              r"|\s+(?!\S)|\s+")
LLAMA_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")

R1_SYSTEM = ("A conversation between User and Assistant. The User asks a question and the Assistant solves it. The Assistant "
             "first thinks about the reasoning process in the mind and then provides the User with the answer. The reasoning "
             "process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "
             "<think> reasoning process here </think> <answer> answer here </answer>.")

# ChatML as Qwen2.5 writes it (system message optional, no tools), with DeepSeek-R1-Distill's `<think>\n` prefill.
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{PREFILL}{%- endif %}")

# Llama-3's header format (the BOS token is part of the template, as in Llama-3.1-Instruct).
LLAMA_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{PREFILL}{%- endif %}")

FAMILIES = {
    "qwen2": dict(specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                  config_bos="<|endoftext|>", config_eos="<|im_end|>", gen_eos=["<|im_end|>", "<|endoftext|>"],
                  template=QWEN_TEMPLATE, split=QWEN_SPLIT, tokenizer_class="Qwen2Tokenizer",
                  sampling=dict(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)),
    "llama": dict(specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
                            "<|eot_id|>"], bos="<|begin_of_text|>", eos="<|eot_id|>", pad=None,
                  config_bos="<|begin_of_text|>", config_eos=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
                  gen_eos=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
                  template=LLAMA_TEMPLATE, split=LLAMA_SPLIT, tokenizer_class="PreTrainedTokenizerFast",
                  sampling=dict(do_sample=True, temperature=0.7, top_p=0.8)),
}

NAMES = ["Natalia", "Weng", "Betty", "Julie", "James", "Mark", "Albert", "Ken", "Alexis", "Tina", "Randy", "Joy"]
ITEMS = ["clips", "apples", "books", "pages", "marbles", "cookies", "stickers", "pencils"]
# A little language mixing (R1-Zero's failure mode): the BPE gets tokens for it, so random completions vary in the
# language-consistency reward, which makes GRPO advantages non-zero on a random model.
MIXED = ["让我们一步一步地思考。", "答案是", "首先，我们计算", "所以总数是", "Donc la réponse est", "étape par étape",
         "Also ist die Antwort", "Schritt für Schritt", "Итак, ответ", "шаг за шагом"]


def gsm8k_row(rng:random.Random, answer:int|None=None) -> dict:
    "One GSM8K-style row: a word problem and a worked answer ending in `#### N` (with <<...>> calculator notes)."
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    if answer is None: a, b = rng.randint(2, 60), rng.randint(2, 60)
    else: a = rng.randint(1, max(1, answer - 1)); b = answer - a
    c, d = a + b, rng.randint(2, 5)
    if answer is None and rng.random() < 0.5:
        q = (f"{name} has {a} {item}. She buys {d} packs with {b} {item} in each pack. How many {item} does {name} have now?")
        t = d * b
        ans = f"The packs hold {d}*{b} = <<{d}*{b}={t}>>{t} {item}.\n{name} has {a}+{t} = <<{a}+{t}={a + t}>>{a + t} {item}.\n#### {a + t}"
    else:
        q = (f"{name} sold {item} to {a} of her friends in April, and then she sold {b} {item} in May. "
             f"How many {item} did {name} sell altogether in April and May?")
        ans = f"{name} sold {a}+{b} = <<{a}+{b}={c}>>{c} {item} in April and May.\n#### {c}"
    return {"question": q, "answer": ans}


def write_gsm8k(path, n:int=16, seed:int=0, answer:int|None=None) -> Path:
    "`n` GSM8K-format JSONL rows {question, answer: '...reasoning...\\n#### N'}; `answer`: every row's final answer is it."
    rng, path = random.Random(seed), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(gsm8k_row(rng, answer)) + "\n" for _ in range(n)))
    return path


def _corpus(n:int=400, seed:int=0) -> list[str]:
    "Questions, R1-style traces, system prompts and a little language mixing to train the BPE on."
    rng, out = random.Random(seed), [R1_SYSTEM] * 5
    for i in range(n):
        r = gsm8k_row(rng)
        final = r["answer"].split("####")[-1].strip()
        steps = r["answer"].split("####")[0].strip()
        out += [r["question"], r["answer"],
                f"<think>\n{steps}\n</think>\n<answer>\n{final}\n</answer>",
                f"<think>\n{steps}\n</think>\n\n<answer>{final}</answer>",            # R1's own layout
                f"<think> {rng.choice(MIXED)} {steps} </think> <answer> {final} </answer>",
                " ".join(rng.choice(MIXED) for _ in range(3))]
    return out


def build_tokenizer(family:str="qwen2", vocab_size:int=1000, think_prefill:bool=True):
    "A byte-level BPE trained offline on a generated corpus, with the family's special tokens and chat template."
    from tokenizers import Tokenizer, Regex, models, normalizers, pre_tokenizers, decoders, processors, trainers
    from transformers import PreTrainedTokenizerFast
    f = FAMILIES[family]
    tk = Tokenizer(models.BPE(byte_fallback=False))
    if family == "qwen2": tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(f["split"]), behavior="isolated", invert=False),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(_corpus(), trainer)
    tk.add_special_tokens(f["specials"])               # after the BPE vocabulary, as in Qwen2.5 (151643+) and Llama-3 (128000+)
    if f["bos"] is not None:                           # Llama-3 prepends BOS through its post-processor
        bos_id = tk.token_to_id(f["bos"])
        tk.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), processors.TemplateProcessing(
            single=f"{f['bos']}:0 $A:0", pair=f"{f['bos']}:0 $A:0 {f['bos']}:1 $B:1", special_tokens=[(f["bos"], bos_id)])])
    else: tk.post_processor = processors.ByteLevel(trim_offsets=False)
    template = f["template"].replace("{PREFILL}", "{{- '<think>\\n' }}" if think_prefill else "")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=f["bos"], eos_token=f["eos"], pad_token=f["pad"],
                                  chat_template=template, model_max_length=32768, clean_up_tokenization_spaces=False)
    for tag in TAGS:                                   # as in real tokenizers: `</answer>` is "</", "answer", ">"
        n = len(tok.encode(tag, add_special_tokens=False))
        assert n >= 2, f"{tag!r} is {n} token(s) in the fixture tokenizer; real tokenizers split it into several"
    return tok


def padded_vocab(n:int) -> int:
    "The model's vocabulary rows for a tokenizer of `n` tokens: the next multiple of 64, plus 64 (Qwen2.5 pads 151665 to 151936)."
    return (n // 64 + 1) * 64 + 64


def save_hub_model(path, family:str="qwen2", tied:bool|None=None, think_prefill:bool=True, seed:int=0,
                   hidden_size:int=64, num_hidden_layers:int=2, num_attention_heads:int=4, num_key_value_heads:int=2,
                   intermediate_size:int=128) -> Path:
    "Save a tiny random `family` ('qwen2' or 'llama') causal LM in bf16 with a hub-like tokenizer and generation config."
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    f, path = FAMILIES[family], Path(path)
    tied = (family == "qwen2") if tied is None else tied           # Qwen2.5-0.5B ties embeddings, Llama-3.1-8B does not
    tok = build_tokenizer(family, think_prefill=think_prefill)
    ids = lambda t: [tok.convert_tokens_to_ids(x) for x in t] if isinstance(t, list) else tok.convert_tokens_to_ids(t)
    arch = dict(vocab_size=padded_vocab(len(tok)), hidden_size=hidden_size, intermediate_size=intermediate_size,
                num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                num_key_value_heads=num_key_value_heads, max_position_embeddings=4096, rms_norm_eps=1e-6,
                tie_word_embeddings=tied, bos_token_id=ids(f["config_bos"]), eos_token_id=ids(f["config_eos"]))
    if family == "qwen2":
        cfg = Qwen2Config(**arch, rope_theta=1_000_000.0, use_sliding_window=False, sliding_window=None)
        cls = Qwen2ForCausalLM
    else:
        cfg = LlamaConfig(**arch, rope_theta=500_000.0)
        cls = LlamaForCausalLM
    torch.manual_seed(seed)
    model = cls(cfg).to(torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=ids(f["config_bos"]), eos_token_id=ids(f["gen_eos"]),
                                               pad_token_id=None if f["pad"] is None else ids(f["pad"]), **f["sampling"])
    model.save_pretrained(path)
    tok.save_pretrained(path)
    cfg_file = path / "tokenizer_config.json"          # the class name the hub files give (the tokenizer.json is the same)
    tc = json.loads(cfg_file.read_text()); tc["tokenizer_class"] = f["tokenizer_class"]
    cfg_file.write_text(json.dumps(tc, indent=2))
    return path


def rig_bigram(path, transitions:dict[int, int], scale:float=100.0) -> Path:
    """Rewrite the (untied) model at `path` so its next token is `transitions[current token]`, deterministically.

    Attention and MLP outputs are zeroed, so the last hidden state is the normalised embedding of the current token;
    lm_head row j becomes `scale` times the direction of every token that maps to j. Tokens not in `transitions` get
    near-zero logits everywhere (close to uniform sampling). Real weights, saved back in bf16: every engine sees it."""
    import torch
    from transformers import AutoModelForCausalLM
    path = Path(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert not model.config.tie_word_embeddings, "rig_bigram needs an untied lm_head (save_hub_model(..., tied=False))"
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")): p.zero_()
        emb = model.get_input_embeddings().weight
        h = emb / emb.pow(2).mean(-1, keepdim=True).add(model.config.rms_norm_eps).sqrt() * model.model.norm.weight
        W = torch.zeros_like(model.lm_head.weight)
        for src, dst in transitions.items(): W[dst] += scale * h[src] / h[src].pow(2).sum()
        model.lm_head.weight.copy_(W)
    model.to(torch.bfloat16).save_pretrained(path)
    return path


def distinct_tokens(tok, text:str) -> list[int]|None:
    "Token ids that spell `text` exactly, none used twice (any segmentation, not only the canonical one), or None."
    pieces = {}
    for t, i in tok.get_vocab().items():
        if i not in tok.all_special_ids: pieces.setdefault(tok.convert_tokens_to_string([t]), i)
    by_start = sorted(pieces, key=len, reverse=True)
    def go(pos, used):
        if pos == len(text): return []
        for s in by_start:
            if s and text.startswith(s, pos) and pieces[s] not in used:
                rest = go(pos + len(s), used | {pieces[s]})
                if rest is not None: return [pieces[s], *rest]
        return None
    return go(0, frozenset())


def rig_text(path, after:int, text:str, end:int) -> Path:
    """Rig the untied model at `path` (`rig_bigram`) to answer `text` and then `end` (e.g. EOS) whenever its input ends
    with token `after` (e.g. the chat template's last token). `text` must be spellable with distinct tokens."""
    from transformers import AutoTokenizer
    ids = distinct_tokens(AutoTokenizer.from_pretrained(path), text)
    assert ids is not None and after not in ids and end not in ids, f"cannot spell {text!r} with distinct tokens"
    return rig_bigram(path, {**dict(zip([after, *ids[:-1]], ids)), ids[-1]: end})
