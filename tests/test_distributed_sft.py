"The SFT trainer (chapter 6) under torchrun on CPU (gloo): 2 processes give the single-process update."
import json, os, socket, subprocess, sys
from pathlib import Path
import torch

WORKER = r'''
import sys, torch
from r1_ref.distill import SFTTrainer, load_sft_config
out, steps, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
tr = SFTTrainer(load_sft_config(overrides=overrides))
log = [tr.train_step() for _ in range(steps)]
if tr.acc.is_main_process:
    torch.save({k: v.detach().cpu().clone() for k, v in tr.policy.state_dict().items()}, out + ".pt")
    open(out + ".json", "w").write(str([[m["loss"], m["grad_norm"]] for m in log]))   # Adam hides a gradient scale; the norm does not
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    from r1_ref.toy import build_tokenizer, build_model, toy_completion
    tok = build_tokenizer(); model_dir = tmp_path / "m"
    build_model(tok, hidden_size=48, num_hidden_layers=1, intermediate_size=96).save_pretrained(model_dir); tok.save_pretrained(model_dir)
    data = tmp_path / "t.jsonl"   # completions of different lengths, so the token-count normaliser matters
    data.write_text("".join(json.dumps({"prompt": f"{a}+{a * 7}", "completion": toy_completion(a, a * 7, "think" if a % 2 else "answer")}) + "\n"
                            for a in range(10, 42)))
    script = tmp_path / "worker.py"; script.write_text(WORKER)
    args = [f"model={model_dir}", f"sft_data={data}", "eval_split=null", "teacher=null", "batch_size=8", "micro_batch_size=2",
            "steps=3", "lr=1e-2", "max_grad_norm=1e6", "progress=false", f"output_dir={tmp_path / 'o'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "3", *args], capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(["torchrun", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                          str(script), str(tmp_path / "two"), "3", *args], capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    init = build_model(tok, hidden_size=48, num_hidden_layers=1, intermediate_size=96).state_dict()
    moved = max(float((a[k] - init[k]).abs().max()) for k in a)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print("moved", moved, "diff", diff)
    assert moved > 1e-3 and diff < 2e-5, (moved, diff)
    l1, l2 = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert len(l1) == len(l2) == 3 and all(abs(x - y) < 1e-3 * max(1, abs(x)) for u, v in zip(l1, l2) for x, y in zip(u, v)), (l1, l2)
