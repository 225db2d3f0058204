"""`python train.py --demo`: the whole training loop on a fresh machine in a few minutes.

Data: procedural SYNDOF scenes made here (dmenet.syndof.procedural); real photos with masks from a
CUHK-layout folder the caller names (the CLI's --demo-real), otherwise the procedural scenes stand in
for the real streams as well (their binary blur maps as masks). Small crops, a short schedule, then B is
saved with dmenet.weights.checkpoints.save_blur_net and run on two photos (σ maps and a figure).

ImageNet weights: used when available (Keras' cache, $DMENET_VGG19_WEIGHTS or --vgg19-weights).
Without them the demo says so, starts B's encoder from random weights, and drops C (mode BDS),
unless --content-random asks for C with random VGG weights (mode BDCS).
"""
import pathlib

from dmenet.training.config import TrainConfig

DEMO_SCENES = 24
DEMO_IMAGE_SIZE = (128, 160)


def find_real_images(candidates):
    """The first CUHK-layout folder (image/ + gt/) among the candidates, or None."""
    for folder in map(pathlib.Path, candidates or ()):
        if (folder / "image").is_dir() and (folder / "gt").is_dir():
            return folder.resolve()
    return None


def local_vgg19_weights(path=None):
    """ImageNet VGG19 weights already on this machine (dmenet.weights.pretrained.local_vgg19_file), as a
    string, or None; a given path that does not exist is an error."""
    from dmenet.weights.pretrained import WeightsUnavailableError, local_vgg19_file

    if path and not pathlib.Path(path).expanduser().is_file():
        raise WeightsUnavailableError(f"--vgg19-weights {path}: no such file")
    found = local_vgg19_file(path)
    return str(found) if found else None


def imagenet_available(path=None):
    return local_vgg19_weights(path) is not None


def make_syndof(folder, count=DEMO_SCENES, seed=0):
    """Procedural SYNDOF scenes in the official layout (skipped when already there)."""
    folder = pathlib.Path(folder)
    if (folder / "image").is_dir() and len(list((folder / "image").iterdir())) >= count:
        return folder
    try:
        from dmenet.syndof.procedural import write_procedural_dataset
    except ImportError as error:
        raise RuntimeError(f"the demo needs dmenet.syndof.procedural to make its training data ({error})") from None
    print(f"demo: generating {count} procedural SYNDOF scenes in {folder} …")
    write_procedural_dataset(folder, count, seed=seed, image_size=DEMO_IMAGE_SIZE)
    return folder


def demo_config(run_dir, vgg19_weights="", content_random=False, steps=40, real_dir=None):
    """The demo's settings and a line describing what it will do."""
    syndof = pathlib.Path(run_dir) / "demo_syndof"
    notes = []
    vgg19_weights = local_vgg19_weights(vgg19_weights) or ""
    imagenet = bool(vgg19_weights)
    if imagenet:
        mode = "BDCS"
        notes.append("ImageNet VGG19 weights found: B's encoder and C start from them (mode BDCS)")
    elif content_random:
        mode = "BDCS"
        notes.append("no ImageNet weights: B's encoder starts random; C uses RANDOM VGG weights as asked (mode BDCS)")
    else:
        mode = "BDS"
        notes.append("no ImageNet weights: B's encoder starts random and C is left out (mode BDS); "
                     "pass --vgg19-weights FILE for the full model or --content-random for C with random weights")
    real = find_real_images([real_dir] if real_dir else [])
    if real is not None:
        real_images, real_masks, unlabelled = real / "image", real / "gt", real / "image"
        notes.append(f"real streams: {real} (its masks for S, its photos as the unlabelled set too)")
    else:
        real_images, real_masks, unlabelled = syndof / "image", syndof / "blur_map_binary", syndof / "image"
        notes.append("no real photos found: the procedural scenes stand in for the real streams")
    config = TrainConfig(
        run_dir=str(run_dir), syndof_dir=str(syndof), real_images_dir=str(real_images), real_masks_dir=str(real_masks),
        unlabelled_dir=str(unlabelled), mode=mode, imagenet=imagenet, content_random=content_random and not imagenet,
        vgg19_weights=vgg19_weights or "", batch_size=2, crop_size=64, max_steps=steps, checkpoint_every=20,
        tensorboard_every=5, sample_every=20, steps_per_epoch=DEMO_SCENES // 2,
    )
    return config, notes


def run_demo(run_dir="runs/demo", vgg19_weights="", content_random=False, steps=40, progress=True, real_dir=None):
    """Generate data, train, save B, and write inference outputs; returns the training summary.

    Args:
        real_dir: a CUHK-layout folder (image/ + gt/) for the real streams; None or a folder that is
            not there: the procedural scenes stand in.
    """
    from dmenet.training.runner import train

    config, notes = demo_config(run_dir, vgg19_weights, content_random, steps, real_dir)
    for note in notes:
        print("demo:", note)
    make_syndof(config.syndof_dir)
    summary = train(config, progress=progress)
    outputs = demo_inference(summary["blur_net"], config, pathlib.Path(run_dir) / "demo_outputs")
    plot_losses(pathlib.Path(run_dir) / "log.jsonl", pathlib.Path(run_dir) / "demo_outputs" / "losses.png")
    print(f"demo: B saved to {summary['blur_net']}; outputs in {outputs}")
    return summary


def demo_inference(weights, config, out_dir, count=2):
    """infer.py's outputs (16-bit σ map, colour map, side-by-side figure) for a couple of photos."""
    from dmenet.files.images import list_images
    from dmenet.inference.batch import OutputOptions, run_inference
    from dmenet.inference.tiling import DefocusPredictor

    predictor = DefocusPredictor.from_weights(weights)
    photos = list_images(config.real_images_dir)[:count]
    run_inference(photos, predictor, out_dir, OutputOptions(write_figure=True), progress=False)
    return pathlib.Path(out_dir)


def plot_losses(log_path, png_path):
    """Every loss of the step log against the step, log scale."""
    from dmenet.files.figures import new_figure, save_figure
    from dmenet.training.run import StepLog

    records = [r for r in StepLog(log_path).read() if r.get("phase") == "main"]
    if not records:
        return None
    keys = [k for k in records[0] if k.startswith("loss_")]
    figure, axis = new_figure(figsize=(7, 4))
    steps = [r["step"] for r in records]
    for key in keys:
        axis.plot(steps, [max(r[key], 1e-12) for r in records], label=key)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, png_path, dpi=90)
    return png_path
