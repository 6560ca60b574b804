"The `r1-ref` command as a user runs it."
import json, subprocess, sys


def test_demo_writes_metrics_and_curve(tmp_path):
    out = tmp_path / "demo"
    res = subprocess.run(["r1-ref", "demo", "--out", str(out), "--steps", "40"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 41))
    assert rows[-1]["p_correct"] > rows[0]["p_correct"]
    assert (out / "curve.png").stat().st_size > 1000


def test_unknown_command_fails_clearly():
    res = subprocess.run(["r1-ref", "fly"], capture_output=True, text=True)
    assert res.returncode != 0 and "invalid choice: 'fly'" in res.stderr
