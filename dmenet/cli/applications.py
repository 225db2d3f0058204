"""infer.py's options for what a σ map is for: all-in-focus, magnification, depth, masks, and maps
computed earlier (--sigma-maps), which need no network and no TensorFlow.

Every value is checked here, before a model or TensorFlow loads, and a bad one is a ValueError whose
message infer.py prints as its one ``error:`` line.
"""
import pathlib

SIGMA_UNITS_HELP = ("auto (infer.py's NAME_sigma.npy, or its 16-bit NAME_sigma.png whose text states the scale), "
                    "px (stored values are σ in pixels), scale=K (σ = value / K, e.g. scale=10 for SYNDOF's 16-bit σ·10 maps), "
                    "official (the official DMENet checkpoint's 8-bit maps: σ = max(0, (15·v/255 − 1)/2)), "
                    "normalized (σ / 7 stored in [0, 1] of the PNG's range)")


def add_arguments(parser):
    """The applications' options, in their own group of `parser`."""
    group = parser.add_argument_group("applications (docs/applications.md)")
    group.add_argument("--all-in-focus", nargs="?", const="cuhk", metavar="PRESET|λ",
                       help="write NAME_allinfocus.png: the photo deconvolved layer by layer with the official DMENet "
                            "method; λ is the data weight (larger = sharper, noisier): a number or a preset "
                            "cuhk (420, the default), dpdd (16.8), realdof (4.2)")
    group.add_argument("--magnify", metavar="K", help="write NAME_magnified.png: the photo as shot with a K× wider aperture (K ≥ 1; every σ × K)")
    group.add_argument("--depth", action="store_true",
                       help="write NAME_depth.png (16-bit; .npy with --npy): relative inverse depth (bright = near), or depth "
                            "in mm with --camera")
    group.add_argument("--side", default="far", metavar="far|near",
                       help="where blur lies from the focal plane: far (default: behind a focused subject, the usual photo) "
                            "or near; orders the magnification's layers and picks the depth's branch")
    group.add_argument("--camera", metavar="F,Z,N",
                       help="for --depth in mm: focal length F (mm), focus distance Z (mm) and f-number N, e.g. 50,2000,2.8 "
                            "(the width is each photo's)")
    group.add_argument("--sigma-maps", metavar="DIR",
                       help="use σ maps computed earlier instead of running a network (no TensorFlow): the map of "
                            "photo NAME is DIR/NAME_sigma.npy|png or DIR/NAME.npy|png")
    group.add_argument("--sigma-unit", default="auto", metavar="UNIT", help=f"what --sigma-maps values mean: {SIGMA_UNITS_HELP}")


def mask_threshold(text):
    """--mask-threshold: a σ in pixels, or "otsu" (each photo's own split); None when not given."""
    if text is None:
        return None
    if text.strip().lower() == "otsu":
        return "otsu"
    from dmenet.applications.inputs import positive_number

    return positive_number(text, "--mask-threshold (σ px, or otsu)", inclusive=True)


def all_in_focus_lambda(text):
    """(λ, preset name or None) for --all-in-focus, or (None, None) when not asked for."""
    if text is None:
        return None, None
    try:
        from dmenet.applications.deblur import LAMBDA_PRESETS, resolve_lambda
    except ImportError as error:
        raise ValueError(f"--all-in-focus needs dmenet.applications.deblur, which this installation lacks ({error})") from None
    preset = text.strip().lower()
    return resolve_lambda(text), preset if preset in LAMBDA_PRESETS else None


def camera(text):
    """--camera F,Z,N → {f_mm, z_focal, n_number}, or None."""
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError(f"--camera takes F,Z,N (focal length mm, focus distance mm, f-number), e.g. 50,2000,2.8; got {text!r}")
    from dmenet.applications.inputs import positive_number

    names = ("the focal length F", "the focus distance Z", "the f-number N")
    f_mm, z_focal, n_number = (positive_number(part.strip(), f"--camera: {name}") for part, name in zip(parts, names))
    return {"f_mm": f_mm, "z_focal": z_focal, "n_number": n_number}


def application_options(args):
    """ApplicationOptions from the parsed arguments (ValueError on any bad value)."""
    from dmenet.applications.outputs import ApplicationOptions

    lam, preset = all_in_focus_lambda(args.all_in_focus)
    lens = camera(args.camera)
    if lens is not None and not args.depth:
        raise ValueError("--camera goes with --depth (it turns the relative depth into millimetres)")
    return ApplicationOptions(all_in_focus=lam, all_in_focus_preset=preset, magnify=args.magnify, depth=args.depth,
                              side=args.side.strip().lower(), camera=lens)


def sigma_map_folder(folder, unit):
    """(PredictionFolder for --sigma-maps, whether each PNG must state its own unit)."""
    from dmenet.evaluation.predictions import PredictionFolder

    if not pathlib.Path(folder).is_dir():
        raise ValueError(f"--sigma-maps {folder}: no such folder")
    text = unit.strip().lower()
    if text == "auto":
        return PredictionFolder(folder), True
    if text == "px":
        return PredictionFolder(folder, unit="sigma", scale=1.0), False
    if text in ("official", "normalized"):
        return PredictionFolder(folder, unit=text), False
    if text.startswith("scale="):
        from dmenet.applications.inputs import positive_number

        return PredictionFolder(folder, unit="sigma", scale=positive_number(text[len("scale="):], "--sigma-unit scale=K: K")), False
    raise ValueError(f"unknown --sigma-unit {unit!r}; expected {SIGMA_UNITS_HELP}")
