"""The training engine: exact resume, cancellation, events, schedules, configs and DDP."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from trainer.checkpoint import load_checkpoint
from trainer.config import TrainConfig, lr_factor, make_config, read_config_file
from trainer.data.prepare import PrepareSettings, prepare
from trainer.errors import Cancelled, PriorPathError
from trainer.events import read_events
from trainer.jobs import CancelToken
from trainer.train import STOP_FILE, resume_config, train

from ..conftest import REPO, SAMPLE

TINY = {"ngf": 8, "ndf": 8}


@pytest.fixture(scope="module")
def he_patches(tmp_path_factory):
    """Real H&E patches (256x512) prepared from the bundled sample."""
    out = tmp_path_factory.mktemp("he")
    prepare([SAMPLE / "he"], out, PrepareSettings(stain="he", patch=(256, 512)))
    return out


def tiny_config(data, **values) -> TrainConfig:
    base = {"data": str(data), "size": (64, 128), "epochs": 2, "options": dict(TINY), "log_every": 1,
            "sample_every": 1000, "checkpoint_every": 1000}
    base.update(values)
    return make_config(base)


def weights(run_dir) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(run_dir / "checkpoints" / "latest.safetensors")
    return {k: v for k, v in ckpt.tensors.items() if k.startswith(("net.", "optim.", "extra."))}


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(he_patches, tmp_path):
    # 74 patches per epoch: stopping at 70 and resuming crosses into the second epoch
    steps = 80
    train(tiny_config(he_patches, max_steps=steps), tmp_path / "straight")
    train(tiny_config(he_patches, max_steps=70), tmp_path / "split")
    train(resume_config(tmp_path / "split", {"max_steps": steps}), tmp_path / "split", resume=True)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    # the resumed run's events continue the first part's without a gap or a repeat
    steps_logged = [e["step"] for e in read_events(tmp_path / "split" / "events.jsonl") if e["type"] == "step"]
    assert steps_logged == list(range(1, steps + 1))


def test_dropout_and_data_order_make_runs_differ_by_seed(he_patches, tmp_path):
    """The resume test above would pass trivially if training ignored its randomness; it does not."""
    train(tiny_config(he_patches, max_steps=5, seed=1), tmp_path / "a")
    train(tiny_config(he_patches, max_steps=5, seed=2), tmp_path / "b")
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_cancel_stops_with_a_checkpoint_and_resume_finishes(he_patches, tmp_path):
    token = CancelToken()

    def progress(done, total, message):
        if done == 3:
            token.cancel()

    run = tmp_path / "run"
    with pytest.raises(Cancelled, match="step 3"):
        train(tiny_config(he_patches, max_steps=8), run, progress=progress, cancel=token)
    assert load_checkpoint(run / "checkpoints" / "latest.safetensors").state["step"] == 3
    assert [e["type"] for e in read_events(run / "events.jsonl")][-1] == "cancelled"
    result = train(resume_config(run, {}), run, resume=True)
    assert result.step == 8
    events = read_events(run / "events.jsonl")
    assert events[-1]["type"] == "end" and any(e["type"] == "resume" and e["step"] == 3 for e in events)


def test_a_stop_file_in_the_run_folder_stops_cleanly_and_a_resume_ignores_it(he_patches, tmp_path):
    """The desktop app's stop request where no signal reaches the child (Windows consoles)."""
    run = tmp_path / "run"

    def progress(done, total, message):
        if done == 2:
            (run / STOP_FILE).touch()

    with pytest.raises(Cancelled, match="step 2"):
        train(tiny_config(he_patches, max_steps=6), run, progress=progress)
    assert (run / STOP_FILE).exists()  # left behind, as after a crash of the GUI
    an_hour_ago = time.time() - 3600
    os.utime(run / STOP_FILE, (an_hour_ago, an_hour_ago))  # older than this process: stale
    assert train(resume_config(run, {}), run, resume=True).step == 6


def test_periodic_checkpoints_samples_and_events(he_patches, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_config(he_patches, max_steps=9, checkpoint_every=2, keep_checkpoints=2, sample_every=4), run)
    assert result.step == 9
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "latest.safetensors", "step_0000006.safetensors", "step_0000008.safetensors"]
    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert samples == ["step_0000004.png", "step_0000008.png", "step_0000009.png"]
    events = read_events(run / "events.jsonl")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("checkpoint") == 5
    step = next(e for e in events if e["type"] == "step")
    assert set(step["losses"]) == {"G_gan", "G_l1", "D_real", "D_fake"} and step["lr"] == pytest.approx(2e-4)


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    config = make_config({"epochs": 4, "decay_epochs": 2})
    factors = [lr_factor(s, config, steps_per_epoch=10) for s in range(0, 41, 5)]
    assert factors == pytest.approx([1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0])
    assert make_config({"epochs": 100}).total_decay_epochs() == 50  # the paper: 50 constant + 50 decaying


def test_a_run_folder_is_not_overwritten_and_resume_keeps_the_maths(he_patches, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(he_patches, max_steps=2), run)
    with pytest.raises(PriorPathError, match="already holds a training run"):
        train(tiny_config(he_patches, max_steps=2), run)
    with pytest.raises(PriorPathError, match="cannot change lr"):
        resume_config(run, {"lr": 1e-3})
    with pytest.raises(PriorPathError, match="no checkpoint to resume from"):
        resume_config(tmp_path / "empty", {})


def test_sizes_the_network_cannot_take_are_refused_with_the_allowed_multiple(he_patches, tmp_path):
    with pytest.raises(PriorPathError, match=r"multiples of 64 .*64x128"):
        train(tiny_config(he_patches, size=(96, 160)), tmp_path / "run")
    assert not (tmp_path / "run" / "events.jsonl").exists()


def test_config_file_then_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[train]\nmodel = "pix2pix"\nsize = "256x512"\nepochs = 10\n\n[model]\nngf = 32\n')
    train_values, options = read_config_file(path)
    config = make_config({**train_values, "epochs": 4, "options": options})
    assert config.size == (256, 512) and config.epochs == 4 and config.options == {"ngf": 32}
    path.write_text("[train]\nepochs = \n")
    with pytest.raises(PriorPathError, match="not a valid TOML"):
        read_config_file(path)
    with pytest.raises(PriorPathError, match="unknown training setting"):
        make_config({"epoch": 3})


def run_cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "trainer.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


def test_cli_trains_and_reports_option_errors(he_patches, tmp_path):
    out = tmp_path / "run"
    ok = run_cli("train", "--data", he_patches, "--out", out, "--size", "64x128", "--max-steps", "2",
                 "--option", "ngf=8", "--option", "ndf=8", "--no-progress")
    assert ok.returncode == 0, ok.stderr
    assert "2/2 steps" in ok.stdout and (out / "checkpoints" / "latest.safetensors").is_file()
    bad = run_cli("train", "--data", he_patches, "--out", tmp_path / "b", "--option", "ngff=8")
    assert bad.returncode == 1 and "unknown option(s) ngff" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("train", "--data", he_patches, "--out", tmp_path / "c", "--model", "stylegan")
    assert bad.returncode == 1 and "unknown model 'stylegan'" in bad.stderr
    bad = run_cli("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "d")
    assert bad.returncode == 1 and "nowhere" in bad.stderr


def test_ddp_with_two_cpu_processes_matches_one_process_with_the_combined_batch(he_patches, tmp_path):
    """Gradients averaged over 2 ranks x batch 1 equal those of batch 2 in one process (instance norm, no
    dropout, so nothing depends on the batch split); the weights agree far better than with batch 1."""
    common = ["--data", he_patches, "--size", "64x128", "--max-steps", "4", "--no-progress",
              "--option", "ngf=8", "--option", "ndf=8", "--option", "norm=instance", "--option", "dropout=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "trainer.cli", "train", *map(str, common), "--out", str(tmp_path / "ddp"),
                          "--batch-size", "1"], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    for name, batch in (("two", 2), ("one", 1)):
        r = run_cli("train", *common, "--out", tmp_path / name, "--batch-size", batch, env=env)
        assert r.returncode == 0, r.stderr

    def gen(run):
        w = weights(tmp_path / run)
        return torch.cat([v.flatten() for k, v in sorted(w.items()) if k.startswith("net.G") and v.is_floating_point()])

    ddp_w, two, one = gen("ddp"), gen("two"), gen("one")
    assert (ddp_w - two).abs().mean() < 0.2 * (one - two).abs().mean()
    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "latest.safetensors")
    assert ckpt.state["world"] == 2 and {"rng.cpu.r0", "rng.cpu.r1"} <= set(ckpt.tensors)


def test_ddp_previews_with_batch_norm_do_not_wait_for_other_ranks(he_patches, tmp_path):
    """Only rank 0 draws samples; a DDP forward there would wait forever for the other rank's buffers."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "trainer.cli", "train", "--data", str(he_patches), "--size", "64x128",
                        "--max-steps", "3", "--sample-every", "2", "--option", "ngf=8", "--option", "ndf=8",
                        "--no-progress", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["step_0000002.png", "step_0000003.png"]


def test_device_auto_falls_back_to_the_cpu_and_a_missing_gpu_is_named():
    from trainer.devices import pick_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert pick_device("auto").type in ("cpu", "mps")
    with pytest.raises(PriorPathError, match="sees no CUDA GPU"):
        pick_device("cuda")


TINY_OPTIONS = {
    "pix2pix": {"ngf": 8, "ndf": 8},
    "cyclegan": {"ngf": 8, "ndf": 8, "n_blocks": 2, "pool_size": 3},
    "pix2pixhd": {"ngf": 8, "ndf": 8, "n_blocks": 2, "n_downsampling": 2},
    "dcgan": {"ngf": 8, "ndf": 8},
    "depas": {"ngf": 8, "ndf": 8},
    "analogy": {"windows_per_patch": 8, "max_windows": 40},  # the reservoir is full by step 5
}


@pytest.mark.parametrize("model", ["cyclegan", "pix2pixhd", "dcgan", "depas", "analogy"])
def test_every_model_resumes_exactly(he_patches, tmp_path, model):
    """Stop at step 4, resume to 7: the same weights, optimizer moments (and CycleGAN pools) as 7 in one go."""
    def config(steps):
        return tiny_config(he_patches, model=model, options=TINY_OPTIONS[model], max_steps=steps)

    train(config(7), tmp_path / "straight")
    train(config(4), tmp_path / "split")
    train(resume_config(tmp_path / "split", {"max_steps": 7}), tmp_path / "split", resume=True)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    if model == "cyclegan":
        pools = [k for k in load_checkpoint(tmp_path / "split" / "checkpoints" / "latest.safetensors").tensors
                 if k.startswith("extra.pool_")]
        assert len(pools) == 6  # two pools of 3


@pytest.mark.parametrize("model", ["cyclegan", "pix2pixhd", "dcgan", "depas"])
def test_every_model_trains_with_ddp_on_two_cpu_processes(he_patches, tmp_path, model):
    options = [a for k, v in TINY_OPTIONS[model].items() for a in ("--option", f"{k}={v}")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "trainer.cli", "train", "--model", model, "--data", str(he_patches), "--size",
                        "64x128", "--max-steps", "2", "--sample-every", "1", *options, "--no-progress",
                        "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.safetensors")
    assert ckpt.state == {**ckpt.state, "step": 2, "world": 2}
    assert len(list((tmp_path / "run" / "samples").iterdir())) == 2


def test_kill_9_during_training_then_resume_finishes_from_the_last_checkpoint(he_patches, tmp_path):
    import signal
    import time

    run = tmp_path / "run"
    args = [sys.executable, "-m", "trainer.cli", "train", "--data", str(he_patches), "--out", str(run), "--size",
            "64x128", "--max-steps", "400", "--checkpoint-every", "3", "--option", "ngf=8", "--option", "ndf=8",
            "--no-progress"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = run / "checkpoints" / "latest.safetensors"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(e["type"] == "checkpoint" and e["step"] >= 6
                                                  for e in read_events(run / "events.jsonl")):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = load_checkpoint(latest).state["step"]
    assert saved >= 6
    r = run_cli("train", "--out", run, "--resume", "--max-steps", saved + 4, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(latest).state["step"] == saved + 4
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temporaries left
    steps = [e["step"] for e in read_events(run / "events.jsonl") if e["type"] == "step"]
    assert steps == sorted(set(steps)) and steps[-1] == saved + 4  # redone steps are logged once


def test_a_fresh_run_in_a_folder_killed_before_its_first_checkpoint_starts_a_new_log(he_patches, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "events.jsonl").write_text('{"type": "start", "step": 0, "seconds": 0}\n{"type": "step", "step": 1, "seconds": 1}\n')
    train(tiny_config(he_patches, max_steps=2), run)
    kinds = [e["type"] for e in read_events(run / "events.jsonl")]
    assert kinds.count("start") == 1 and kinds[-1] == "end"


def test_a_diverged_loss_stops_with_a_clear_error_and_an_error_event(he_patches, tmp_path, monkeypatch):
    from trainer.models import pix2pix

    real_step = pix2pix.Model.train_step

    def diverging(self, batch, optimizers):
        losses = real_step(self, batch, optimizers)
        return {**losses, "G_l1": float("nan")} if self.calls_seen else losses

    monkeypatch.setattr(pix2pix.Model, "calls_seen", False, raising=False)
    monkeypatch.setattr(pix2pix.Model, "train_step", diverging)
    run = tmp_path / "run"
    progress_calls = []

    def progress(done, total, message):
        progress_calls.append(done)
        pix2pix.Model.calls_seen = True

    with pytest.raises(PriorPathError, match="diverged at step 2: loss G_l1 is not finite"):
        train(tiny_config(he_patches, max_steps=5), run, progress=progress)
    last = read_events(run / "events.jsonl")[-1]
    assert last["type"] == "error" and "diverged" in last["message"] and progress_calls == [1]
