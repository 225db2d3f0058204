"""make_syndof.py as a batch tool: bad pairs skipped and reported (exit 1) or fatal with --strict,
out-of-range layer counts flagged, no TensorFlow import, shards that merge into the unsharded
dataset byte for byte, and --verify finding deleted and truncated samples."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dmenet.files.images import write_png

SCRIPT = "data/make_syndof.py"


def run_cli(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=120)


def tree_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def make_inputs(folder, depths):
    """Tiny RGB + depth (.npy, mm) pairs named by the keys of `depths`."""
    rng = np.random.default_rng(0)
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    for name, depth in depths.items():
        write_png(folder / "rgb" / f"{name}.png", (rng.random(depth.shape + (3,)) * 255).astype(np.uint8))
        np.save(folder / "depth" / f"{name}.npy", depth)
    return folder / "rgb", folder / "depth"


def ramp(scale=1.0, shape=(20, 28)):
    return np.repeat(np.linspace(1000, 3000, shape[1])[None], shape[0], axis=0) * scale


def test_bad_pairs_are_skipped_and_reported(tmp_path):
    images, depths = make_inputs(tmp_path, {"a": ramp(), "b": ramp(1.5), "c": np.full((20, 28), np.nan)})
    out = tmp_path / "out"
    result = run_cli("--images", images, "--depths", depths, "--out", out, "--workers", 1, "--quiet")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (out / "params").iterdir()) == ["a_000.json", "b_000.json"]
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "c.npy" in failed[0] and "no valid depth" in failed[0] and "leave the pair out" in failed[0]
    assert "2 of 3 samples" in result.stdout

    strict = run_cli("--images", images, "--depths", depths, "--out", tmp_path / "strict", "--workers", 1, "--quiet", "--strict")
    assert strict.returncode == 2 and "c.npy" in strict.stderr and "Traceback" not in strict.stderr


def test_constant_depth_names_the_file_and_nothing_done_exits_2(tmp_path):
    images, depths = make_inputs(tmp_path, {"flat": np.full((20, 28), 2500.0)})
    result = run_cli("--images", images, "--depths", depths, "--out", tmp_path / "out", "--workers", 1, "--quiet")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("failed:"))
    assert "flat.npy" in line and "constant" in line and "at least two depths" in line


def test_out_of_range_layer_counts_are_recorded_and_warned_once(tmp_path):
    # 28 distinct depths: no camera reaches the official 200–350 layers.
    images, depths = make_inputs(tmp_path, {"a": ramp(), "b": ramp(2.0)})
    out = tmp_path / "out"
    result = run_cli("--images", images, "--depths", depths, "--out", out, "--workers", 1, "--quiet", "--per-image", 2)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "4 samples" in warnings[0] and "200–350" in warnings[0]
    params = json.loads((out / "params/a_001.json").read_text())
    assert params["layers_in_range"] is False and params["camera_draws"] == 22


def test_make_syndof_does_not_import_tensorflow(tmp_path):
    code = (
        "import runpy, sys; sys.argv = ['make_syndof.py', '--procedural', '1', '--size', '16', '20', '--out', sys.argv[1], "
        "'--workers', '1', '--quiet']\n"
        "try:\n    runpy.run_path('data/make_syndof.py', run_name='__main__')\nexcept SystemExit as done:\n    assert done.code == 0\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def make_syndof_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_syndof", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_four_shards_merge_into_the_unsharded_dataset(tmp_path):
    main = make_syndof_main()
    images, depths = make_inputs(tmp_path, {"a": ramp(), "b": ramp(1.5), "c": ramp(0.7)})
    common = ["--images", str(images), "--depths", str(depths), "--per-image", "2", "--workers", "1", "--quiet"]
    assert main(common + ["--out", str(tmp_path / "whole")]) == 0
    merged = tmp_path / "merged"
    counts = []
    for index in range(4):
        part = tmp_path / f"part{index}"
        assert main(common + ["--out", str(part), "--shard", f"{index}/4"]) == 0
        assert main(["--verify", "--out", str(part), "--shard", f"{index}/4"]) == 0
        counts.append(len(list((part / "params").iterdir())))
        shutil.copytree(part, merged, dirs_exist_ok=True)
    assert counts == [2, 2, 1, 1]  # 6 samples, disjoint
    assert tree_bytes(merged) == tree_bytes(tmp_path / "whole")


def test_shard_argument_errors():
    from dmenet.syndof.writer import SyndofJobError, parse_shard

    assert parse_shard("0/1") == (0, 1) and parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "1", "a/b", "-1/3", "0/0"):
        with pytest.raises(SyndofJobError, match="K"):
            parse_shard(bad)
    result = run_cli("--procedural", 1, "--out", "unused", "--shard", "4/4")
    assert result.returncode == 2 and "0 ≤ K < N" in result.stderr and "Traceback" not in result.stderr


def test_verify_finds_deleted_and_truncated_samples(tmp_path, capsys):
    main = make_syndof_main()
    out = tmp_path / "p"
    generate = ["--procedural", "4", "--size", "24", "32", "--out", str(out), "--workers", "1", "--quiet"]
    assert main(generate) == 0
    complete = tree_bytes(out)
    assert main(["--verify", "--out", str(out)]) == 0
    (out / "blur_map_binary/procedural_001_binary.png").unlink()  # a lost file
    for path in (out / "params/procedural_002.json", out / "image/procedural_002.png", out / "blur_map/procedural_002.png"):
        path.unlink()  # a sample whose files are (nearly) all gone
    blur_map = out / "blur_map/procedural_003.png"
    blur_map.write_bytes(blur_map.read_bytes()[: len(blur_map.read_bytes()) // 2])  # truncated by a full disk
    result = run_cli("--verify", "--out", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    broken = {line.split(":")[1].strip() for line in result.stderr.splitlines() if line.startswith("broken:")}
    assert broken == {"procedural_001", "procedural_002", "procedural_003"}
    assert "rerun: procedural_001 procedural_002 procedural_003" in result.stdout
    assert "blur_map/procedural_003.png: unreadable" in result.stderr
    assert main(["--verify", "--remove-broken", "--out", str(out)]) == 1
    assert main(generate) == 0
    assert tree_bytes(out) == complete
    assert main(["--verify", "--out", str(out)]) == 0


def test_verify_checks_label_ranges(tmp_path):
    from dmenet.syndof.procedural import write_procedural_dataset
    from dmenet.syndof.verify import verify_dataset

    out = tmp_path / "p"
    write_procedural_dataset(out, 2, image_size=(24, 32), max_coc=15, workers=1, progress=False)
    assert verify_dataset(out).ok
    write_png(out / "blur_map/procedural_000.png", np.full((24, 32), 36, np.uint16))  # σ 3.6 px > 3.5 for max_coc 15
    write_png(out / "blur_map_binary/procedural_001_binary.png", np.full((24, 32), 7, np.uint8))
    report = verify_dataset(out)
    assert report.broken == ["procedural_000", "procedural_001"]
    assert "above 35" in report.problems["procedural_000"][0]
    assert "other than 0 and 255" in report.problems["procedural_001"][0]


@pytest.mark.parametrize("argv", [["--verify", "--out", "x", "--procedural", "2"], ["--remove-broken", "--procedural", "1", "--out", "x"]])
def test_verify_option_conflicts(argv):
    with pytest.raises(SystemExit) as stopped:
        make_syndof_main()(argv)
    assert stopped.value.code == 2
