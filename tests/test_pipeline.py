"""Training data: validation reports, label decoding, augmentation rules, the zipped tf.data stream."""
import numpy as np
import pytest
import tensorflow as tf

from dmenet.files.images import write_png
from dmenet.pipelines import DatasetError, cuhk_set, real_labelled_set, real_unlabelled_set, syndof_set, training_dataset
from dmenet.pipelines.augment import augment_pair, resized_shape
from dmenet.pipelines.streams import decode_syndof_map, read_mask_target


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _syndof(root, sizes, sigma_x10=35, map_size=None):
    for i, (h, w) in enumerate(sizes):
        write_png(root / "image" / f"s{i}.png", _rgb(h, w, i))
        mh, mw = map_size or (h, w)
        stored = np.full((mh, mw), sigma_x10, np.uint16)
        stored[: mh // 2] = 0
        write_png(root / "blur_map" / f"s{i}.png", stored)
    return root


def test_resize_rules_follow_the_original():
    # short side ≤ crop: scaled so it exceeds the crop (floor(side·ratio) + 1)
    assert [int(v) for v in resized_shape(100, 150, 240)] == [241, 361]
    # short side > 800: scaled down to just above 800
    assert [int(v) for v in resized_shape(1000, 1200, 240)] == [801, 961]
    # in between: untouched
    assert [int(v) for v in resized_shape(427, 640, 240)] == [427, 640]


def test_augmentation_moves_image_and_label_together_and_is_seeded():
    image = tf.random.stateless_uniform([50, 70, 3], [1, 2])
    label = image[..., :1]  # the label is a copy of a channel: it must stay aligned
    crop, crop_label = augment_pair(image, label, tf.constant([3, 4], tf.int64), crop_size=32)
    assert crop.shape == (32, 32, 3) and crop_label.shape == (32, 32, 1)
    np.testing.assert_allclose(crop[..., :1].numpy(), crop_label.numpy(), atol=1e-6)
    again, _ = augment_pair(image, label, tf.constant([3, 4], tf.int64), crop_size=32)
    np.testing.assert_array_equal(crop.numpy(), again.numpy())
    crops = {augment_pair(image, label, tf.constant([3, s], tf.int64), 32)[0].numpy().tobytes() for s in range(8)}
    assert len(crops) > 4


def test_noise_augmentation_follows_the_original_and_leaves_labels_alone():
    """0.75·image + 0.25 + 0.0625·n with grey noise n ~ N(0, v), v ~ U(0, 0.1): seeded, the same in
    R, G and B, off by default."""
    image = tf.fill([64, 64, 3], 0.5)
    label = tf.reshape(tf.range(64 * 64, dtype=tf.float32), [64, 64, 1]) / 4096
    seed = tf.constant([3, 4], tf.int64)
    plain, plain_label = augment_pair(image, label, seed, crop_size=32)
    noisy, noisy_label = augment_pair(image, label, seed, crop_size=32, noise=True)
    np.testing.assert_array_equal(plain.numpy(), 0.5)
    np.testing.assert_array_equal(noisy_label.numpy(), plain_label.numpy())  # same crop, label untouched
    residual = (noisy.numpy() - (0.75 * 0.5 + 0.25)) / 0.0625
    np.testing.assert_allclose(residual[..., 0], residual[..., 2], atol=1e-5)  # grey noise
    assert abs(residual.mean()) < 0.1 and 0 < residual.std() < np.sqrt(0.1) + 0.05
    again, _ = augment_pair(image, label, seed, crop_size=32, noise=True)
    np.testing.assert_array_equal(again.numpy(), noisy.numpy())


def test_crop_is_rotation_and_flip_of_the_source():
    """Without resizing, every crop must be one of the 8 dihedral transforms of a source window."""
    image = tf.reshape(tf.range(40 * 40 * 3, dtype=tf.float32), [40, 40, 3]) / (40 * 40 * 3)
    crop, _ = augment_pair(image, None, tf.constant([0, 9], tf.int64), crop_size=16)
    corner = crop.numpy()[..., 0]
    source = image.numpy()[..., 0]
    found = False
    for k in range(4):
        for flipped in (corner, corner[::-1]):
            candidate = np.rot90(flipped, -k)
            hits = np.argwhere(np.isclose(source, candidate[0, 0]))
            for top, left in hits:
                window = source[top : top + 16, left : left + 16]
                if window.shape == candidate.shape and np.allclose(window, candidate):
                    found = True
    assert found


def test_syndof_labels_sigma10_and_coc15(tmp_path):
    _syndof(tmp_path, [(20, 24)], sigma_x10=35)
    path = str(tmp_path / "blur_map" / "s0.png")
    target = decode_syndof_map(path, tf.constant(16), "sigma10", sigma_max=7.0).numpy()
    assert target.shape == (20, 24, 1)
    np.testing.assert_allclose(target[15, 0, 0], 3.5 / 7.0, rtol=1e-6)
    assert target[0, 0, 0] == 0
    old = decode_syndof_map(path, tf.constant(16), "coc15").numpy()
    np.testing.assert_allclose(old[15, 0, 0], 3.5 / 15.0, rtol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_coc"):
        decode_syndof_map(path, tf.constant(16), "sigma10", sigma_max=2.0)


def test_mask_polarity(tmp_path):
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 255
    write_png(tmp_path / "m.png", mask)
    blurred = read_mask_target(str(tmp_path / "m.png"), "blurred-white")[..., 0]
    np.testing.assert_array_equal(blurred[:2], 1)
    np.testing.assert_array_equal(blurred[2:], 0)
    np.testing.assert_array_equal(read_mask_target(str(tmp_path / "m.png"), "sharp-white")[..., 0], 1 - blurred)
    # runs configured before the vocabulary was unified still load
    np.testing.assert_array_equal(read_mask_target(str(tmp_path / "m.png"), "255-sharp")[..., 0], 1 - blurred)


def test_validation_reports_every_problem_at_once(tmp_path):
    _syndof(tmp_path / "syn", [(32, 32), (32, 32)], map_size=(30, 32))
    write_png(tmp_path / "syn" / "image" / "lonely.png", _rgb(32, 32))
    (tmp_path / "syn" / "image" / "broken.png").write_bytes(b"not a png at all")
    write_png(tmp_path / "syn" / "blur_map" / "broken.png", np.zeros((32, 32), np.uint16))
    with pytest.raises(DatasetError) as error:
        syndof_set(tmp_path / "syn")
    text = str(error.value)
    assert "lonely.png: no blur map" in text
    assert "broken.png: not a readable image" in text
    assert text.count("blur map is 32x30 but its image s") == 2
    assert len(error.value.problems) == 4


def test_validation_of_real_sets(tmp_path):
    write_png(tmp_path / "image" / "a.png", _rgb(20, 20))
    with pytest.raises(DatasetError, match="does not exist"):
        real_labelled_set(tmp_path / "image", tmp_path / "gt")
    (tmp_path / "gt").mkdir()
    write_png(tmp_path / "gt" / "orphan.png", np.zeros((20, 20), np.uint8))
    with pytest.raises(DatasetError) as error:
        real_labelled_set(tmp_path / "image", tmp_path / "gt")
    assert "no mask for it" in str(error.value) and "mask without an image" in str(error.value)
    write_png(tmp_path / "tiny" / "t.png", _rgb(8, 8))
    with pytest.raises(DatasetError, match="too small"):
        real_unlabelled_set(tmp_path / "tiny")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        real_unlabelled_set(tmp_path / "empty")


def test_stream_on_real_data_is_seeded_and_well_formed(shared_data):
    syn = syndof_set(shared_data / "syndof_official_sample")
    real = cuhk_set(shared_data / "cuhk_train")
    assert len(real.images) == 504
    unl = real_unlabelled_set(shared_data / "cuhk_train" / "image")

    def first_batches(seed):
        data = training_dataset(syn, 2, 48, real=real, unlabelled=unl, seed=seed)
        return [{k: v.numpy() for k, v in b.items()} for b in data.take(2)]

    a, b, c = first_batches(5), first_batches(5), first_batches(6)
    batch = a[0]
    assert batch["synthetic_image"].shape == (2, 48, 48, 3) and batch["synthetic_defocus"].shape == (2, 48, 48, 1)
    assert batch["real_image"].shape == (2, 48, 48, 3) and batch["unlabelled_image"].shape == (2, 48, 48, 3)
    assert set(np.unique(batch["real_mask"])) <= {0.0, 1.0}
    assert 0 <= batch["synthetic_defocus"].min() and batch["synthetic_defocus"].max() <= 1.0
    for key in batch:
        np.testing.assert_array_equal(a[1][key], b[1][key])
    assert not np.array_equal(a[0]["real_image"], c[0]["real_image"])


def test_labels_beyond_the_configured_max_coc_are_reported_up_front(tmp_path):
    from dmenet.pipelines.streams import check_label_range

    syndof = syndof_set(_syndof(tmp_path, [(20, 24), (20, 24)], sigma_x10=35))
    check_label_range(syndof, sigma_max=7.0)
    with pytest.raises(DatasetError, match="max-coc") as error:
        check_label_range(syndof, sigma_max=2.0)
    assert len(error.value.problems) == 2


def _rotated_jpeg(path, stored_hw=(24, 40)):
    """A JPEG whose pixels are stored landscape with EXIF orientation 6 (displayed portrait): the
    bright left third of the stored pixels is the top third once displayed."""
    from PIL import Image

    pixels = np.zeros((*stored_hw, 3), np.uint8)
    pixels[:, : stored_hw[1] // 3] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=100, exif=exif)


def test_exif_rotated_photo_needs_a_mask_of_the_displayed_size(tmp_path):
    """A mask drawn on the stored (unrotated) pixels is refused with the EXIF rotation named; a mask
    of the displayed photo trains, and its crops stay aligned with the rotated image."""
    _rotated_jpeg(tmp_path / "image" / "p.jpg")
    raw_mask = np.zeros((24, 40), np.uint8)
    raw_mask[:, :13] = 255
    write_png(tmp_path / "gt" / "p.png", raw_mask)
    with pytest.raises(DatasetError, match=r"p.png: mask is 40x24 but its image p.jpg is 24x40 as displayed \(its EXIF orientation 6"):
        real_labelled_set(tmp_path / "image", tmp_path / "gt")

    displayed_mask = np.zeros((40, 24), np.uint8)
    displayed_mask[:13] = 255  # the bright band is on top once the photo is rotated
    write_png(tmp_path / "gt" / "p.png", displayed_mask)
    real = real_labelled_set(tmp_path / "image", tmp_path / "gt")
    syndof = syndof_set(_syndof(tmp_path / "syn", [(20, 24)]))
    batch = next(iter(training_dataset(syndof, 1, 16, real=real, seed=1).take(1)))
    image, mask = batch["real_image"].numpy()[0], batch["real_mask"].numpy()[0, ..., 0]
    bright = image.mean(axis=-1) > 0.5
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert np.mean(bright == (mask > 0.5)) > 0.9  # the mask follows the rotated photo


def test_evaluation_and_training_agree_on_the_rotated_pair(tmp_path):
    from dmenet.evaluation.datasets import open_benchmark

    _rotated_jpeg(tmp_path / "image" / "p.jpg")
    write_png(tmp_path / "gt" / "p.png", np.zeros((24, 40), np.uint8))
    with pytest.raises(DatasetError, match="EXIF orientation 6"):
        open_benchmark("folder", tmp_path, polarity="blurred-white", split="all")
