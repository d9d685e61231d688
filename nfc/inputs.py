"""The network inputs of ``nfc simulate --input SPEC``.

A SPEC is one of:

* ``random`` or ``random:SEED``: uniform in [-1, 1), from ``numpy.random.default_rng(SEED)``
  (default seed 0). Several inputs given one ``random`` spec are drawn in the model's input order
  from the same generator.
* a ``.npy`` file: an array of the input's ONNX shape, or of that shape without its leading batch
  dimension of 1.
* a ``.npz`` file: the array named like the input if there is one, else the first array; the same
  shape rule.
* an image file (``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.gif``, ``.tif``/``.tiff``, ``.webp``,
  ``.ppm``/``.pgm``/``.pbm``), for inputs of shape ``(1, C, H, W)``, preprocessed as follows:

  1. decode with Pillow, apply the EXIF orientation, convert to 8-bit RGB (alpha dropped, grey
     images repeated on the three channels);
  2. resize to the model's ``H x W`` with Pillow's bilinear filter (no crop, so the aspect ratio
     follows the model's), when the size differs;
  3. scale to [0, 1] (divide by 255);
  4. convert by ``color``: ``rgb`` keeps R, G, B; ``gray`` is one channel
     Y = 0.299 R + 0.587 G + 0.114 B; ``yuv`` is BT.601 YUV like ``skimage.color.rgb2yuv``:
     Y as for gray, U = -0.14714119 R - 0.28886916 G + 0.43601035 B,
     V = 0.61497538 R - 0.51496512 G - 0.10001026 B; ``auto`` is ``rgb`` for a 3-channel input
     and ``gray`` for a 1-channel input. ``gray`` on a 3-channel input repeats Y on the three
     channels; ``rgb`` and ``yuv`` need a 3-channel input;
  5. with ``standardise`` (the default), each channel minus its mean, divided by its standard
     deviation over the image (a constant channel is only centred), else the values of step 4;
  6. NCHW float32 with a batch of 1.

A model with several inputs takes one ``NAME=SPEC`` per input, or a single ``random[:SEED]`` for
all of them. Every problem raises :class:`~nfc.errors.NfcError` saying what is wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nfc.errors import NfcError

__all__ = ["COLORS", "IMAGE_SUFFIXES", "load_inputs", "load_image", "parse_random"]

#: ``--color`` choices.
COLORS = ("auto", "rgb", "gray", "yuv")
#: File name endings read as images (lower case).
IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)
_KINDS = "a .npy/.npz array, an image (" + "/".join(s[1:] for s in IMAGE_SUFFIXES) + ") or random[:SEED]"

#: BT.601 RGB -> YUV on [0, 1] RGB (rows Y, U, V), the matrix of ``skimage.color.rgb2yuv``.
YUV_FROM_RGB = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.14714119, -0.28886916, 0.43601035],
        [0.61497538, -0.51496512, -0.10001026],
    ]
)

Shape = tuple[int, ...]


def parse_random(spec: str) -> int | None:
    """The seed of ``random``/``random:SEED``, or None when ``spec`` is not a random spec."""
    if spec == "random":
        return 0
    if not spec.startswith("random:"):
        return None
    text = spec.split(":", 1)[1]
    try:
        seed = int(text)
    except ValueError:
        raise NfcError(f"--input {spec}: random:SEED needs a whole number SEED, not {text!r}") from None
    if seed < 0:
        raise NfcError(f"--input {spec}: random:SEED needs SEED >= 0, not {seed}")
    return seed


def _fit(arr: np.ndarray, shape: Shape, what: str, name: str) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise NfcError(f"{what}: holds {arr.dtype} values, not real numbers; save a float array")
    if arr.shape == shape:
        out = arr
    elif len(shape) >= 1 and shape[0] == 1 and arr.shape == shape[1:]:
        out = arr.reshape(shape)
    else:
        raise NfcError(
            f"{what}: an array of shape {arr.shape} does not fit the input {name!r} of shape {shape}; "
            f"save one sample of shape {shape} (or {shape[1:]} without the batch dimension)"
            if shape and shape[0] == 1
            else f"{what}: an array of shape {arr.shape} does not fit the input {name!r} of shape {shape}"
        )
    out = np.asarray(out, np.float32)
    if not np.all(np.isfinite(out)):
        raise NfcError(f"{what}: holds NaN or infinite values; the network needs finite inputs")
    return out


def _load_array(path: Path, spec: str, name: str, shape: Shape) -> np.ndarray:
    what = f"--input {spec}"
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several kinds for a file that is not an array
        raise NfcError(f"{what}: cannot read it as a {path.suffix} array ({exc})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if not data.files:
                raise NfcError(f"{what}: the .npz file holds no arrays")
            key = name if name in data.files else data.files[0]
            try:
                arr = data[key]
            except Exception as exc:
                raise NfcError(f"{what}: cannot read its array {key!r} ({exc})") from None
        what = f"{what} (array {key!r})"
    else:
        arr = data
    return _fit(np.asarray(arr), shape, what, name)


def load_image(
    path: str | Path, shape: Shape, color: str = "auto", standardise: bool = True, name: str = "input"
) -> np.ndarray:
    """An image file preprocessed as the module docstring says, as an array of ``shape`` (1, C, H, W)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    what = f"--input {path}"
    if len(shape) != 4 or shape[0] != 1:
        raise NfcError(
            f"{what}: an image needs an input of shape (1, C, H, W); the input {name!r} has shape {shape}; "
            "give a .npy/.npz array instead"
        )
    if color not in COLORS:
        raise NfcError(f"unknown --color {color!r}; choose one of {', '.join(COLORS)}")
    _, c, h, w = shape
    if color == "auto":
        color = "rgb" if c == 3 else "gray"
    if c not in (1, 3) or (c == 1 and color != "gray"):
        raise NfcError(
            f"{what}: --color {color} makes 3 channels but the input {name!r} takes 1; use --color gray "
            "(or auto)"
            if c == 1
            else f"{what}: the input {name!r} has {c} channels; images fill 1 (gray) or 3 (rgb, yuv, gray "
            "repeated); give a .npy/.npz array instead"
        )
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise NfcError(f"{what}: cannot read it as an image ({exc}); give a PNG, JPEG or BMP file") from None
    except Image.DecompressionBombError as exc:
        raise NfcError(f"{what}: {exc}") from None
    if rgb.size != (w, h):
        rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
    x = np.asarray(rgb, dtype=np.float64) / 255.0  # H x W x 3 in [0, 1]
    if color == "gray":
        x = np.repeat(x @ YUV_FROM_RGB[:1].T, c, axis=2)
    elif color == "yuv":
        x = x @ YUV_FROM_RGB.T
    x = x.transpose(2, 0, 1)  # C x H x W
    if standardise:
        mean = x.mean(axis=(1, 2), keepdims=True)
        std = x.std(axis=(1, 2), keepdims=True)
        x = (x - mean) / np.where(std > 0, std, 1.0)
    return x[None].astype(np.float32)


def _load_one(spec: str, name: str, shape: Shape, color: str, standardise: bool) -> np.ndarray:
    path = Path(spec)
    if not path.is_file():
        if path.is_dir():
            raise NfcError(f"--input {spec}: is a directory; give {_KINDS}")
        raise NfcError(f"--input {spec}: no such file; give {_KINDS}")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _load_array(path, spec, name, shape)
    if suffix in IMAGE_SUFFIXES:
        return load_image(path, shape, color, standardise, name)
    raise NfcError(f"--input {spec}: unknown kind of file {suffix or '(no suffix)'!r}; give {_KINDS}")


def load_inputs(
    specs: Sequence[str],
    inputs: Sequence[tuple[str, Shape]],
    color: str = "auto",
    standardise: bool = True,
) -> dict[str, np.ndarray]:
    """The network's inputs ``{name: float32 array of its ONNX shape}`` from the ``--input`` specs.

    ``inputs``: the model's inputs as (name, ONNX shape), in order. One spec without ``NAME=``
    serves a single-input model, or every input when it is ``random[:SEED]``; otherwise give
    ``NAME=SPEC`` once per input.
    """
    if color not in COLORS:
        raise NfcError(f"unknown --color {color!r}; choose one of {', '.join(COLORS)}")
    shapes = dict(inputs)
    names = [n for n, _ in inputs]
    if not specs:
        raise NfcError("no --input given; use --input random, --input FILE.npy or --input IMAGE.png")
    named: dict[str, str] = {}
    plain: list[str] = []
    for spec in specs:
        key, sep, rest = spec.partition("=")
        if sep and key in shapes:
            if key in named:
                raise NfcError(f"--input {key}=...: given twice; give each input once")
            named[key] = rest
        elif sep and len(names) > 1 and not Path(spec).exists():
            raise NfcError(
                f"--input {spec}: the model has no input {key!r}; its inputs are {', '.join(names)}"
            )
        else:
            plain.append(spec)
    if plain and (named or len(plain) > 1):
        raise NfcError(
            f"--input {plain[0]}: with several --input options each must be NAME=SPEC, "
            f"NAME one of the model's inputs ({', '.join(names)})"
        )
    if plain:
        spec = plain[0]
        seed = parse_random(spec)
        if seed is not None:
            rng = np.random.default_rng(seed)
            return {n: rng.uniform(-1.0, 1.0, s).astype(np.float32) for n, s in inputs}
        if len(names) > 1:
            raise NfcError(
                f"--input {spec}: the model has {len(names)} inputs ({', '.join(names)}); give "
                "--input NAME=SPEC once for each (only random[:SEED] serves them all)"
            )
        named = {names[0]: spec}
    missing = [n for n in names if n not in named]
    if missing:
        raise NfcError(
            f"no --input for the model's input{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            "give --input NAME=SPEC for each"
        )
    out = {}
    for n in names:
        spec = named[n]
        seed = parse_random(spec)
        if seed is not None:
            out[n] = np.random.default_rng(seed).uniform(-1.0, 1.0, shapes[n]).astype(np.float32)
        else:
            out[n] = _load_one(spec, n, shapes[n], color, standardise)
    return out
