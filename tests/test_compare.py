"""evaluate.py --compare: one run equals separate runs, resumes, survives a failing method, writes a
well-formed report.html (opened in headless Chromium by test_compare_report_in_a_real_browser)."""
import csv
import html.parser
import json
import os

import numpy as np
import pytest
from scipy import ndimage

from dmenet.cli import evaluate
from dmenet.evaluation.compare import parse_benchmark, parse_method
from dmenet.files import images as image_io
from tests import browser
from tests.test_eval_cli import run_cli

SIZE = (48, 64)
STEMS = ("a01", "a02")


def blurred_photo(rng, mask):
    """Texture, Gaussian-blurred where the mask says blurred: a defocus detector has something to find."""
    texture = rng.uniform(0, 1, (*SIZE, 3))
    soft = np.stack([ndimage.gaussian_filter(texture[..., c], 2.5) for c in range(3)], axis=2)
    return np.where(mask[..., None], soft, texture)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A 2-image mask set, a 2-image SYNDOF-layout set, two methods' weights and two folders of maps."""
    import keras

    from dmenet.networks.blur_net import build_blur_net
    from dmenet.park17.network import build_patch_classifier
    from dmenet.units import NORMALIZED
    from dmenet.weights.checkpoints import save_blur_net
    from dmenet.weights.park17 import save_park17_classifier

    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(7)
    keras.utils.set_random_seed(0)
    save_park17_classifier(build_patch_classifier(), root / "park.weights.h5")
    save_blur_net(build_blur_net(), root / "b.weights.h5", NORMALIZED)
    columns = np.arange(SIZE[1])[None, :].repeat(SIZE[0], 0)
    for index, stem in enumerate(STEMS):
        mask = columns < (20 + 16 * index)
        image_io.write_png(root / "masks" / "image" / f"{stem}.png", np.round(blurred_photo(rng, mask) * 255).astype(np.uint8))
        image_io.write_png(root / "masks" / "gt" / f"{stem}.png", mask.astype(np.uint8) * 255)
        # A hand-made score (8-bit, 255 = blurred) and a σ map (.npy), both per benchmark sub-folder.
        score = np.clip(mask * 0.7 + rng.uniform(0, 0.3, SIZE), 0, 1)
        for benchmark in ("masks", "syndof"):
            image_io.write_png(root / "score_maps" / benchmark / f"{stem}.png", np.round(score * 255).astype(np.uint8))
        sigma = np.where(mask, 3.0, 0.5).astype(np.float64)
        image_io.write_png(root / "syndof" / "image" / f"{stem}.png", np.round(blurred_photo(rng, mask) * 255).astype(np.uint8))
        image_io.write_png(root / "syndof" / "blur_map" / f"{stem}.png", np.round(sigma * 10).astype(np.uint16))
        image_io.save_npy(root / "sigma_maps" / "masks" / f"{stem}.npy", (sigma + rng.normal(0, 0.4, SIZE)).astype(np.float32))
        image_io.save_npy(root / "sigma_maps" / "syndof" / f"{stem}.npy", (sigma + rng.normal(0, 0.4, SIZE)).astype(np.float32))
    return root


def compare_args(root, out):
    return ["--compare", f"dmenet={root / 'b.weights.h5'}", f"park17={root / 'park.weights.h5'}",
            f"hand:score={root / 'score_maps'}", f"sig:sigma={root / 'sigma_maps'}", f"broken={root / 'nowhere'}",
            "--benchmark", f"folder={root / 'masks'}", f"syndof={root / 'syndof'}", "--mask-polarity", "blurred-white",
            "--xla", "off", "--precision", "fp32", "--out", out]


@pytest.fixture(scope="module")
def compared(workspace):
    """One --compare run: (exit code, stdout, stderr, out folder)."""
    out = workspace / "out"
    code = evaluate.main([str(arg) for arg in compare_args(workspace, out)] + ["--no-progress"])
    return code, out


def results_by_key(out):
    record = json.loads((out / "comparison.json").read_text())
    return record, {(r["benchmark"], r["method"]): r for r in record["results"]}


def test_each_method_equals_a_separate_evaluate_run(workspace, compared, capsys, tmp_path):
    code, out = compared
    assert code == 1  # one method failed, the others were scored
    record, results = results_by_key(out)
    single_runs = {
        ("folder", "dmenet"): ["--weights", workspace / "b.weights.h5", "--xla", "off", "--precision", "fp32"],
        ("folder", "park17"): ["--method", "park17", "--weights", workspace / "park.weights.h5", "--precision", "fp32"],
        ("folder", "hand"): ["--predictions", workspace / "score_maps" / "masks", "--pred-unit", "score"],
        ("folder", "sig"): ["--predictions", workspace / "sigma_maps" / "masks", "--pred-unit", "sigma"],
        ("syndof", "dmenet"): ["--weights", workspace / "b.weights.h5", "--xla", "off", "--precision", "fp32"],
        ("syndof", "sig"): ["--predictions", workspace / "sigma_maps" / "syndof", "--pred-unit", "sigma"],
    }
    for (benchmark, method), flags in single_runs.items():
        dataset = ["--dataset", "folder", "--mask-polarity", "blurred-white", "--data-root", workspace / "masks"] \
            if benchmark == "folder" else ["--dataset", "syndof", "--data-root", workspace / "syndof"]
        single = tmp_path / f"{benchmark}_{method}"
        code, _, stderr = run_cli(capsys, *dataset, *flags, "--out", single, "--sheet-count", "0")
        assert code == 0, stderr
        alone = json.loads((single / "summary.json").read_text())["runs"][0]["metrics"]
        assert results[(benchmark, method)]["metrics"] == alone, (benchmark, method)
    # Thresholds speak in σ too: Park'17's score is σ / 2, a σ map's σ / 7.
    park, sig = results[("folder", "park17")], results[("folder", "sig")]
    assert park["protocol"]["binary_score"] == "sigma / 2" and park["metrics"]["fixed_threshold_sigma_px"] == 1.0
    assert sig["metrics"]["best_threshold_sigma_px"] == pytest.approx(7 * sig["metrics"]["best_threshold"])
    assert 1 < sig["metrics"]["best_threshold_sigma_px"] < 3
    assert park["paper_reference"] is None and "DMENet_BDCS" in results[("syndof", "dmenet")]["paper_reference"]
    assert results[("folder", "hand")]["metrics"]["best_threshold_sigma_px"] is None


def test_tables_hold_one_row_per_method_and_the_failure(compared):
    _, out = compared
    record, results = results_by_key(out)
    methods = ["dmenet", "park17", "hand", "sig", "broken"]
    assert [row[0] for row in record["table"]["rows"]] == methods
    assert record["table"]["columns"] == [
        "method", "folder accuracy", "folder AP", "folder best-threshold accuracy", "folder s/photo",
        "syndof MSE", "syndof MAE", "syndof s/photo"]
    rows = {row["method"]: row for row in csv.DictReader((out / "comparison.csv").open())}
    assert float(rows["park17"]["folder AP"]) == results[("folder", "park17")]["metrics"]["average_precision"]
    assert float(rows["dmenet"]["syndof s/photo"]) > 0 and rows["hand"]["folder s/photo"] == ""
    assert rows["broken"]["folder AP"] == "failed" and results[("folder", "broken")]["status"] == "failed"
    assert "does not exist" in results[("folder", "broken")]["error"]
    # hand is a score map: it cannot be scored on a regression set, and says so in one line.
    assert results[("syndof", "hand")]["status"] == "failed" and "regression" in results[("syndof", "hand")]["error"]
    markdown = (out / "comparison.md").read_text()
    assert markdown.splitlines()[0].startswith("| method | folder accuracy |")
    assert "| park17 |" in markdown and "σ ≈" in markdown and "broken on folder:" in markdown
    for name in ("pr_curve_folder.png", "folder/per_image_park17.csv", "syndof/per_image_sig.csv", "report.html"):
        assert (out / name).is_file(), name
    assert not (out / "pr_curve_syndof.png").exists()


def test_a_second_run_reuses_the_maps_and_their_timings(workspace, compared, capsys):
    _, out = compared
    maps = out / "folder" / "maps_park17"
    stamps = {path.name: path.stat().st_mtime_ns for path in maps.glob("*.npy")}
    assert sorted(stamps) == [f"{stem}.npy" for stem in STEMS]
    before, results_before = results_by_key(out)
    os.remove(maps / "a02.npy")  # as if the first run had been interrupted after one photo
    code, stdout, stderr = run_cli(capsys, *compare_args(workspace, out))
    assert code == 1
    assert stderr.count("error: broken on") == 2 and "Traceback" not in stderr
    assert (maps / "a01.npy").stat().st_mtime_ns == stamps["a01.npy"]  # kept
    assert (maps / "a02.npy").is_file()  # recomputed
    after, results_after = results_by_key(out)
    for key, result in results_before.items():
        if result["status"] == "ok":
            assert results_after[key]["metrics"] == result["metrics"], key
    dmenet_before, dmenet_after = results_before[("folder", "dmenet")], results_after[("folder", "dmenet")]
    assert dmenet_after["seconds_per_photo"] == dmenet_before["seconds_per_photo"]  # reused maps keep their timing


class ReportParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.rows, self.headings, self.scripts, self.links = [], [], [], 0, []
        self._in_body, self._tag = False, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._tag = tag
        if tag == "img":
            self.images.append(attrs)
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "script":
            self.scripts += 1
        elif tag == "link":
            self.links.append(attrs.get("href"))

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        if self._tag == "td" and self._in_body and data.strip():
            self.rows[-1].append(data.strip())
        if self._tag in ("h2", "h3") and data.strip():
            self.headings.append(data.strip())


def test_report_is_self_contained_with_table_curves_and_photos(compared):
    _, out = compared
    parser = ReportParser()
    parser.feed((out / "report.html").read_text())
    assert [row[0] for row in parser.rows] == ["dmenet", "park17", "hand", "sig", "broken"]
    assert parser.rows[4][1:] == ["failed"] * 7
    assert all(image["src"].startswith("data:image/png;base64,") for image in parser.images)
    assert parser.scripts == 0 and all(link.startswith("data:") for link in parser.links)
    alts = [image["alt"] for image in parser.images]
    assert "precision-recall curves on folder" in alts
    # folder: best, median, worst = both photos; each row: photo, ground truth, 4 methods' maps.
    for stem in STEMS:
        assert f"photo {stem}" in alts and f"ground truth {stem}" in alts
        assert all(f"{method} map of {stem}" in alts for method in ("dmenet", "park17", "hand", "sig"))
    assert "syndof: best, median and worst photos" in parser.headings
    assert sum(alt.startswith("colour scale") for alt in alts) == 2


def test_compare_report_in_a_real_browser(compared):
    """report.html in headless Chromium: no console error, every image decodes, one table row per method."""
    executable = browser.find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no chromium here (apt-get install chromium)")
    _, out = compared
    page, problems = browser.inspect_page(out / "report.html", browser.REPORT_CHECK, executable)
    assert problems == []
    assert page["images"] and all(image["width"] > 0 and image["decoded"] for image in page["images"]), page["images"]
    assert [row[0] for row in page["tables"][0]["rows"]] == ["dmenet", "park17", "hand", "sig", "broken"]
    assert page["scrollHeight"] > 1000
    # The check itself can fail: a broken picture and a console error are both caught.
    bad = out / "broken.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body><table><tbody><tr><td>x</td></tr>'
                   '</tbody></table><img src="data:image/png;base64,AAAA" alt="x"><script>console.error("boom")</script></body></html>')
    page, problems = browser.inspect_page(bad, browser.REPORT_CHECK, executable)
    assert page["images"][0]["width"] == 0 and not page["images"][0]["decoded"]
    assert any("boom" in problem for problem in problems)


def test_method_and_benchmark_arguments_are_checked(workspace, capsys):
    methods = ("dmenet", "park17")
    assert parse_method("park17", methods).weights is None and parse_method("park17=w.h5", methods).weights == "w.h5"
    spec = parse_method("hifst:score=maps/hifst", methods)
    assert (spec.label, spec.method, spec.unit, str(spec.folder)) == ("hifst", None, "score", "maps/hifst")
    for text, message in (("hifst", "is not a method this project runs"), ("park17:score=x", "writes σ in pixels"),
                          ("x:furlongs=d", "unknown unit"), ("a b=c", "write NAME")):
        with pytest.raises(ValueError, match=message):
            parse_method(text, methods)
    assert parse_benchmark(f"cuhk:dmenet-train={workspace}").label == "cuhk:dmenet-train"
    with pytest.raises(ValueError, match="neither a split"):
        parse_benchmark(f"cuhk:nofile.txt={workspace}")
    code, _, stderr = run_cli(capsys, "--compare", "park17", "--weights", "w.h5", "--benchmark", f"folder={workspace}")
    assert code == 2 and "go with a single run" in stderr
    code, _, stderr = run_cli(capsys, "--compare", "park17")
    assert code == 2 and "needs benchmarks" in stderr
    code, _, stderr = run_cli(capsys, "--compare", "zz", "--benchmark", f"folder={workspace}")
    assert code == 2 and "zz=DIR" in stderr


def test_split_file_lines_may_be_bare_numbers_and_misses_are_explained(workspace, capsys, tmp_path):
    (tmp_path / "numbers.txt").write_text("02\n")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "--dataset", "folder", "--mask-polarity", "blurred-white", "--data-root",
                                   workspace / "masks", "--split-file", tmp_path / "numbers.txt", "--predictions",
                                   workspace / "score_maps" / "masks", "--pred-unit", "score", "--out", out)
    assert code == 0, stderr
    run = json.loads((out / "summary.json").read_text())["runs"][0]
    assert run["protocol"]["images"] == 1
    assert [row["stem"] for row in csv.DictReader((out / "per_image_masks.csv").open())] == ["a02"]
    assert "on the score (stored value / scale)" in stdout and run["paper_reference"] is None
    (tmp_path / "numbers.txt").write_text("0005\n")
    code, _, stderr = run_cli(capsys, "--dataset", "folder", "--mask-polarity", "blurred-white", "--data-root",
                              workspace / "masks", "--split-file", tmp_path / "numbers.txt", "--predictions",
                              workspace / "score_maps" / "masks", "--pred-unit", "score", "--out", out)
    assert code == 2 and "lines are image stems, the file names without extension, e.g. a01" in stderr and "0005" in stderr


def test_maps_only_on_rtf_with_a_set_that_cannot_be_opened(tmp_path, capsys):
    """No method runs (no TensorFlow): RTF's MSE/MAE columns, its photos in the report, a missing set's failure line."""
    import scipy.io

    rng = np.random.default_rng(3)
    (tmp_path / "rtf" / "gt").mkdir(parents=True)
    for index in range(3):
        radius = np.where(np.arange(40)[None, :] < 20, 0.5, 4.0) + rng.uniform(0, 0.5, (30, 40))
        scipy.io.savemat(tmp_path / "rtf" / "gt" / f"{index:02d}.mat", {"blurMap": radius})
        image_io.write_png(tmp_path / "rtf" / "image" / f"{index:02d}.png", rng.integers(0, 255, (30, 40, 3)).astype(np.uint8))
        sigma = np.where(np.arange(40)[None, :] < 20, 0.3, 2.5) + rng.normal(0, 0.2 * index, (29, 40))  # one row short
        image_io.save_npy(tmp_path / "good" / f"{index:02d}.npy", sigma.astype(np.float32))
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "--compare", f"good={tmp_path / 'good'}", "--benchmark", f"rtf={tmp_path / 'rtf'}",
                                   f"cuhk={tmp_path / 'nowhere'}", "--out", out)
    assert code == 1 and "Device:" not in stdout
    assert stderr.count("error: benchmark cuhk cannot be used") == 1
    record, results = results_by_key(out)
    assert record["table"]["columns"] == ["method", "rtf MSE", "rtf MAE", "rtf s/photo",
                                          "cuhk accuracy", "cuhk AP", "cuhk best-threshold accuracy", "cuhk s/photo"]
    assert record["table"]["rows"][0][4:] == ["failed"] * 4 and results[("rtf", "good")]["metrics"]["mse"] < 0.05
    page = (out / "report.html").read_text()
    for kind, stem in (("best", "00"), ("worst", "02")):
        assert f"{kind}: {stem}" in page and f'alt="good map of {stem}"' in page
    assert "Ranked by the mean per-image MSE" in page and "colour scale σ (px)" in page


def test_seconds_per_photo_leave_out_the_photo_that_compiled_the_kernels(tmp_path):
    import types

    from dmenet.evaluation.compare import timing
    from dmenet.evaluation.predictions import SECONDS_FILE

    samples = [types.SimpleNamespace(stem=stem) for stem in ("a01", "a02", "a03")]
    recorded = {"a01": {"wall": 12.0, "cpu": 12.0, "compiled_kernels": True}, "a02": {"wall": 1.0, "cpu": 1.5},
                "a03": {"wall": 3.0, "cpu": 2.5}}
    (tmp_path / SECONDS_FILE).write_text(json.dumps(recorded))
    assert timing(tmp_path, samples) == {"mean": 2.0, "median": 2.0, "cpu_mean": 2.0, "photos": 2, "of": 3}
    (tmp_path / SECONDS_FILE).write_text(json.dumps({"a01": recorded["a01"]}))
    assert timing(tmp_path, samples)["mean"] == 12.0  # the only timed photo: kept rather than nothing
