"""`make demo`'s photos: a real test photo and a calibration sample for the scene-parsing network.

Writes ``DIR/astronaut.png`` (scikit-image's bundled photo, the demo's input) and
``DIR/calibrate.npy`` (a different bundled photo, ``rocket`` where scikit-image has it, else
``coffee``, preprocessed exactly as ``nfc simulate --color yuv`` preprocesses an image file), so
that the network is calibrated on one photo and simulated on another.

Usage: python scripts/demo_photos.py DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from nfc.files import atomic_write_with
from nfc.inputs import load_image

SHAPE = (1, 3, 240, 320)  # the scene-parsing network's input


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    photo = out / "astronaut.png"
    atomic_write_with(photo, lambda tmp: Image.fromarray(skimage.data.astronaut()).save(tmp, format="PNG"))
    calib_rgb = skimage.data.rocket() if hasattr(skimage.data, "rocket") else skimage.data.coffee()
    calib_png = out / "calibration-photo.png"
    atomic_write_with(calib_png, lambda tmp: Image.fromarray(calib_rgb).save(tmp, format="PNG"))
    x = load_image(calib_png, SHAPE, "yuv", True)  # one sample of the input shape, as --calibrate takes it
    atomic_write_with(out / "calibrate.npy", lambda tmp: np.save(tmp, x.astype(np.float32)))
    print(f"wrote {photo}, {out / 'calibrate.npy'} (from {calib_png.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
