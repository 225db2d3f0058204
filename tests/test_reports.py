"""infer.py --report and --demo: report.html of a batch of photos, checked as HTML and in headless Chromium."""
import json
import os
import re
import shutil

import numpy as np
import pytest

from dmenet.cli import infer
from dmenet.cli.methods import METHODS
from dmenet.evaluation.predictions import read_sigma_map
from dmenet.files.images import write_png
from dmenet.reports.photos import write_photo_report, write_sigma_maps_report
from tests import browser


def chromium_or_skip():
    executable = browser.find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no chromium here (apt-get install chromium)")
    return executable


@pytest.fixture(scope="module")
def park17_batch(tmp_path_factory):
    """infer.py --method park17 --report on two small photos (a random classifier: real code, quick)."""
    from skimage.data import chelsea, coffee

    from dmenet.park17.network import build_patch_classifier
    from dmenet.weights.park17 import save_park17_classifier

    root = tmp_path_factory.mktemp("batch")
    save_park17_classifier(build_patch_classifier(), root / "park.weights.h5")
    write_png(root / "photos" / "cat.png", chelsea()[::5, ::5])
    write_png(root / "photos" / "cup.png", coffee()[::6, ::6])
    (root / "photos" / "notes.txt").write_text("not a photo")
    out = root / "out"
    code = infer.main([str(root / "photos"), "--method", "park17", "--weights", str(root / "park.weights.h5"), "-o", str(out),
                       "--mask-threshold", "1.0", "--report", "--quiet", "--precision", "fp32"])
    return code, out


def test_infer_report_shows_every_photo_with_its_map_and_mask(park17_batch):
    code, out = park17_batch
    assert code == 0  # notes.txt is skipped with a warning; both photos are done
    summary = json.loads((out / "summary.json").read_text())
    assert [record["stem"] for record in summary["images"]] == ["cat", "cup"]
    page = (out / "report.html").read_text()
    alts = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]+)"', page)
    assert alts == ["colour scale σ (pixels)", "photo cat", "park17 σ map of cat", "park17 mask of cat",
                    "photo cup", "park17 σ map of cup", "park17 mask of cup"]
    assert page.count("<img") == len(alts) and "<script" not in page and "sigma_px &gt; 1" in page
    mean = summary["images"][0]["sigma_px"]["mean"]
    assert f"park17: σ mean {mean:.2f}" in page


def test_report_adds_application_outputs_when_present_and_opens_in_a_browser(park17_batch, tmp_path):
    _, out = park17_batch
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :15] = (200, 40, 40)
    for suffix in ("_allinfocus.png", "_magnified.png", "_depth.png"):
        write_png(out / f"cat{suffix}", rgb)
    page_path = write_photo_report(out, title="batch", ground_truth={"cup": np.full((60, 80), 1.5)})
    page = page_path.read_text()
    for alt in ("all-in-focus (deblurred) cat", "defocus magnified cat", "relative depth cat", "ground truth σ map of cup"):
        assert f'alt="{alt}"' in page, alt
    assert 'alt="all-in-focus (deblurred) cup"' not in page
    value, problems = browser.inspect_page(page_path, browser.REPORT_CHECK, chromium_or_skip())
    assert problems == []
    assert len(value["images"]) == page.count("<img") and all(image["width"] > 0 and image["decoded"] for image in value["images"])
    assert value["headings"] == ["cat", "cup"] and value["title"] == "batch"


def test_report_shows_the_applications_infer_made(park17_batch, tmp_path):
    """infer.py --all-in-focus --magnify --depth --report: the pictures the applications wrote are in the report."""
    out = tmp_path / "apps"
    photos = park17_batch[1].parent / "photos"
    code = infer.main([str(photos / "cat.png"), "--method", "park17", "--weights", str(park17_batch[1].parent / "park.weights.h5"),
                       "-o", str(out), "--all-in-focus", "--magnify", "2", "--depth", "--report", "--quiet", "--precision", "fp32"])
    assert code == 0
    page = (out / "report.html").read_text()
    for alt in ("all-in-focus (deblurred) cat", "defocus magnified cat", "relative depth cat"):
        assert f'alt="{alt}"' in page, alt
    assert page.count("<img") == 6  # colour bar, photo, map, three applications (no mask asked for)


def test_report_needs_an_infer_folder(tmp_path):
    with pytest.raises(ValueError, match=r"holds no summary.json \(nor a --sigma-maps run's applications.json\); run infer.py"):
        write_photo_report(tmp_path)
    with pytest.raises(ValueError, match="holds no applications.json; run infer.py PHOTOS --sigma-maps DIR"):
        write_sigma_maps_report(tmp_path)


def _alts(page):
    return re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]+)"', page)


@pytest.fixture(scope="module")
def sigma_maps_run(tmp_path_factory):
    """infer.py PHOTOS --sigma-maps DIR --sigma-unit scale=10 with every application and --report: two ~96 px
    photos whose maps are another method's 16-bit σ·10 PNGs (no unit text: read right only with the stated unit)."""
    from skimage import data, transform

    root = tmp_path_factory.mktemp("sigma_maps")
    sigmas = {}
    for name, photo in (("astro", data.astronaut()), ("cat", data.chelsea())):
        image = np.round(transform.resize(photo, (72, 96), anti_aliasing=True) * 255).astype(np.uint8)
        write_png(root / "photos" / f"{name}.png", image)
        sigma = np.tile(np.linspace(0.0, 3.0 if name == "astro" else 1.5, 96), (72, 1))
        write_png(root / "maps" / f"{name}.png", np.round(sigma * 10).astype(np.uint16))
        sigmas[name] = np.round(sigma * 10) / 10
    out = root / "apps"
    arguments = [str(root / "photos"), "--sigma-maps", str(root / "maps"), "--sigma-unit", "scale=10", "--magnify", "2",
                 "--all-in-focus", "--depth", "--mask-threshold", "otsu", "--report", "-o", str(out), "--quiet"]
    return infer.main(arguments), out, root / "maps", sigmas


def test_sigma_maps_report_shows_each_photo_with_its_map_mask_and_applications(sigma_maps_run):
    code, out, maps, sigmas = sigma_maps_run
    assert code == 0 and not (out / "summary.json").exists()
    page_path = out / "report.html"
    page = page_path.read_text()
    rows = []
    for stem in ("astro", "cat"):
        rows += [f"photo {stem}", f"given σ map of {stem}", f"mask of {stem}", f"all-in-focus (deblurred) {stem}",
                 f"defocus magnified {stem}", f"relative depth {stem}"]
        # read with the stated unit (σ = value / 10); auto (value / 65535) would give about 0.00
        sigma = sigmas[stem]
        assert f"given: σ mean {sigma.mean():.2f}, max {sigma.max():.2f} px" in page
    assert _alts(page) == ["colour scale σ (pixels)", *rows]
    assert f"σ maps made earlier, read from {maps} (unit sigma, σ = value / 10); no network ran. 2 photos." in page
    assert "each image&#x27;s Otsu threshold" in page and "<script" not in page
    assert write_photo_report(out) == page_path and page_path.read_text() == page  # applications.json alone: the same page
    value, problems = browser.inspect_page(page_path, browser.REPORT_CHECK, chromium_or_skip())
    assert problems == []
    assert len(value["images"]) == len(rows) + 1 and all(image["width"] > 0 and image["decoded"] for image in value["images"])
    assert value["headings"] == ["astro", "cat"]


def test_sigma_maps_report_in_the_maps_own_folder_and_a_map_gone_since(park17_batch, tmp_path, capsys):
    """--sigma-maps DIR -o DIR beside the summary.json that made the maps: the report is of this run (infer.py's
    PNGs read by their own unit text); a map deleted afterwards is one line in its row, the page still whole."""
    folder = tmp_path / "infer"
    folder.mkdir()
    for path in park17_batch[1].iterdir():  # the maps and the run's summary (not what other tests added)
        if path.name == "summary.json" or path.name.endswith("_sigma.png"):
            shutil.copy2(path, folder)
    made = json.loads((folder / "summary.json").read_text())
    # as infer.py stores a map whose σ exceeds 65.5 px: at its own scale, which the report must read it by
    cup = read_sigma_map(folder / "cup_sigma.png")
    write_png(folder / "cup_sigma.png", np.round(cup * 500).astype(np.uint16), text={"dmenet:unit": "sigma_px = value / 500"})
    photos = park17_batch[1].parent / "photos"
    assert infer.main([str(photos), "--sigma-maps", str(folder), "--mask-threshold", "0.5", "--report", "-o", str(folder), "--quiet"]) == 0
    assert f"wrote {folder / 'report.html'}" in capsys.readouterr().out
    page = (folder / "report.html").read_text()
    assert _alts(page) == ["colour scale σ (pixels)", "photo cat", "given σ map of cat", "mask of cat",
                           "photo cup", "given σ map of cup", "mask of cup"]
    assert "σ in px: .npy as stored, each PNG by the scale its dmenet:unit text states" in page and "sigma_px &gt; 0.5" in page
    for record in made["images"]:
        assert f"given: σ mean {record['sigma_px']['mean']:.2f}" in page
    (folder / "cup_sigma.png").unlink()
    page_path = write_sigma_maps_report(folder, title="gone")
    page = page_path.read_text()
    assert page.count('<p class="error">') == 1
    assert f"σ map {folder / 'cup_sigma.png'} is gone (moved or deleted since the masks and applications were made from it)" in page
    assert _alts(page) == ["colour scale σ (pixels)", "photo cat", "given σ map of cat", "mask of cat", "photo cup", "mask of cup"]
    value, problems = browser.inspect_page(page_path, browser.REPORT_CHECK, chromium_or_skip())
    assert problems == [] and all(image["decoded"] for image in value["images"]) and value["headings"] == ["cat", "cup"]


def test_demo_refuses_inputs(tmp_path, capsys):
    assert infer.main(["--demo", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "--demo uses photos scikit-image bundles" in capsys.readouterr().err


@pytest.mark.skipif("zhuo11" not in METHODS, reason="Zhuo & Sim 2011 (zhuo11) is not in this build yet")
def test_demo_writes_real_maps_of_bundled_photos_and_a_report(tmp_path, monkeypatch):
    from dmenet.reports.demo import run_demo, write_synthetic_photo

    monkeypatch.delenv("DMENET_PARK17_WEIGHTS", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_cache"))  # Park'17 left out: nothing may be downloaded
    lines = []
    report = run_demo(tmp_path / "demo", progress=False, log=lines.append, side=160)
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["method"] == "zhuo11" and summary["compared_with"] is None
    assert [record["stem"] for record in summary["images"]] == ["chelsea", "coffee", "motorcycle_syndof"]
    for record in summary["images"]:
        sigma = np.load(tmp_path / "demo" / f"{record['stem']}_sigma.npy")
        assert sigma.shape[0] * sigma.shape[1] > 5000 and np.all(np.isfinite(sigma))
    # The motorcycle's defocus is known: the map must read more blur where there is more (Park'17 here: 1.16 vs 0.76 px).
    _, truth = write_synthetic_photo(tmp_path / "again", side=160)
    sigma = np.load(tmp_path / "demo" / "motorcycle_syndof_sigma.npy")
    assert sigma.shape == truth.shape and sigma[truth > 1.5].mean() > sigma[truth < 0.5].mean() + 0.1
    assert any("Park'17 left out" in line for line in lines)
    value, problems = browser.inspect_page(report, browser.REPORT_CHECK, chromium_or_skip())
    assert problems == [] and all(image["width"] > 0 for image in value["images"])
    alts = [image["alt"] for image in value["images"]]
    assert "ground truth σ map of motorcycle_syndof" in alts
    for stem in ("chelsea", "coffee", "motorcycle_syndof"):
        assert all(f"{what} {stem}" in alts for what in ("all-in-focus (deblurred)", "defocus magnified", "relative depth"))
