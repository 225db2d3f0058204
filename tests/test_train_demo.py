"""The README's main job, shortened: `python train.py --demo` trains, saves B and writes σ maps."""
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end_and_leaves_a_usable_blur_net(tmp_path):
    from dmenet.files.images import read_array
    from dmenet.weights.checkpoints import load_blur_net

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "DMENET_VGG19_WEIGHTS": ""}
    run_dir = tmp_path / "demo"
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--demo", "--demo-steps", "2", "--run-dir", str(run_dir),
                           "--no-progress"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    assert "demo: B saved to" in done.stdout
    model, encoding, metadata = load_blur_net(run_dir / "blur_net.weights.h5")
    assert metadata["step"] == 2 and encoding.kind == "normalized"
    outputs = run_dir / "demo_outputs"
    sigma_maps = sorted(outputs.glob("*_sigma.png"))
    assert len(sigma_maps) == 2 and len(list(outputs.glob("*_figure.png"))) == 2
    stored = read_array(sigma_maps[0])
    assert stored.dtype == np.uint16 and stored.ndim == 2
    assert (outputs / "losses.png").exists() and list((run_dir / "tensorboard" / "main").iterdir())
