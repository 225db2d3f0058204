"""SYNDOF datasets: official layout and encodings, byte-identical for a seed, resumable, clear CLI errors."""
import json
import subprocess
import sys

import numpy as np

from dmenet.files.images import read_array, write_png
from dmenet.syndof.procedural import write_procedural_dataset
from dmenet.syndof.writer import sample_files, write_dataset

SIZE = (48, 64)


def tree_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_procedural_dataset_layout_and_determinism(tmp_path):
    stems = write_procedural_dataset(tmp_path / "a", 3, seed=7, image_size=SIZE, max_coc=15, workers=1, progress=False)
    assert stems == ["procedural_000", "procedural_001", "procedural_002"]
    for stem in stems:
        files = sample_files(tmp_path / "a", stem)
        image = read_array(files["image"])
        sigma10 = read_array(files["blur_map"])
        norm = read_array(files["blur_map_norm"])
        binary = read_array(files["blur_map_binary"])
        params = json.loads(files["params"].read_text())
        assert image.shape == SIZE + (3,) and image.dtype == np.uint8
        assert sigma10.dtype == np.uint16 and sigma10.max() == 35  # max_coc 15 → σ 3.5 px
        assert set(np.unique(binary)) <= {0, 255}
        np.testing.assert_array_equal(binary == 255, sigma10 > 0)
        assert norm.max() == 255 and params["max_coc_px"] == 15 and params["stem"] == stem
    write_procedural_dataset(tmp_path / "b", 3, seed=7, image_size=SIZE, max_coc=15, workers=2, progress=False)
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
    write_procedural_dataset(tmp_path / "c", 1, seed=8, image_size=SIZE, max_coc=15, workers=1, progress=False)
    assert (tmp_path / "c/image/procedural_000.png").read_bytes() != (tmp_path / "a/image/procedural_000.png").read_bytes()


def test_interrupted_run_resumes_without_duplicates(tmp_path):
    out = tmp_path / "out"
    write_procedural_dataset(out, 3, seed=1, image_size=SIZE, workers=1, progress=False)
    complete = tree_bytes(out)
    # Simulate a crash in sample 1: its params (written last) missing and its image half-written.
    sample_files(out, "procedural_001")["params"].unlink()
    sample_files(out, "procedural_001")["image"].write_bytes(b"\x89PNG broken")
    before = sample_files(out, "procedural_000")["image"].stat().st_mtime_ns
    write_procedural_dataset(out, 3, seed=1, image_size=SIZE, workers=1, progress=False)
    assert tree_bytes(out) == complete
    assert sample_files(out, "procedural_000")["image"].stat().st_mtime_ns == before  # skipped, not redone
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary files left behind


def test_dataset_from_rgbd_pairs(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    write_png(tmp_path / "rgb/scene.png", (rng.random((40, 50, 3)) * 255).astype(np.uint8))
    depth_cm = np.repeat(np.linspace(100, 400, 50)[None], 40, axis=0)
    depth_cm[:5] = 0  # missing depth: filled from the nearest valid pixel
    np.save(tmp_path / "depth/scene.npy", depth_cm)
    from dmenet.syndof.depth_io import DepthConversion, pair_files

    pairs = pair_files(tmp_path / "rgb", tmp_path / "depth")
    stems = write_dataset(pairs, tmp_path / "out", per_image=2, conversion=DepthConversion(scale=10), workers=1, progress=False).stems
    assert stems == ["scene_000", "scene_001"]
    params = json.loads((tmp_path / "out/params/scene_001.json").read_text())
    assert params["f_mm"] in (50.0, 70.0, 85.0) and params["depth_scale_to_mm"] == 10


def run_cli(*args):
    return subprocess.run([sys.executable, "data/make_syndof.py", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_cli_errors_are_clear(tmp_path):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    write_png(tmp_path / "rgb/a.png", np.zeros((8, 8, 3), np.uint8))
    np.save(tmp_path / "depth/b.npy", np.ones((8, 8)))
    result = run_cli("--images", tmp_path / "rgb", "--depths", tmp_path / "depth", "--out", tmp_path / "out")
    assert result.returncode == 2 and "images without depth (1): a" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("--procedural", "2", "--images", tmp_path, "--out", tmp_path / "out")
    assert result.returncode == 2 and "exactly one input" in result.stderr
    np.save(tmp_path / "depth/a.npy", np.ones((8, 9)))
    (tmp_path / "depth/b.npy").unlink()
    result = run_cli("--images", tmp_path / "rgb", "--depths", tmp_path / "depth", "--out", tmp_path / "out", "--workers", "1")
    assert result.returncode == 2 and "8" in result.stderr and "Traceback" not in result.stderr


def test_cli_procedural(tmp_path):
    result = run_cli("--procedural", "2", "--size", 32, 40, "--out", tmp_path / "p", "--workers", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "p/blur_map_norm").iterdir()) == ["procedural_000_norm.png", "procedural_001_norm.png"]
