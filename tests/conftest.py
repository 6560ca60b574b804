"Shared test helpers."
import signal, subprocess, time
import pytest


def _kill9_then_resume(command:str, args:list, out, step:int=4, timeout:float=300):
    "Start `r1-ref COMMAND ARGS output_dir=OUT`, SIGKILL it once its step-`step` checkpoint is complete, then resume it."
    proc = subprocess.Popen(["r1-ref", command, *args, f"output_dir={out}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not (out / f"checkpoint-{step:06d}" / "trainer_state.pt").exists():
        assert proc.poll() is None and time.time() < deadline, f"run ended before its step-{step} checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL); proc.wait()
    return subprocess.run(["r1-ref", command, *args, f"output_dir={out}", "--resume"], capture_output=True, text=True, timeout=600)


@pytest.fixture
def kill9_then_resume():
    "A function: run a CLI job, kill -9 it after a checkpoint, resume it; returns the resumed run's CompletedProcess."
    return _kill9_then_resume
