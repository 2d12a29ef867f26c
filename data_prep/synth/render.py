"""Render a formula with matplotlib mathtext (no LaTeX install, no network), printed or handwritten-like."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

FONTSETS = ("dejavusans", "dejavuserif", "cm", "stix", "stixsans")
FONT_SIZES = (14, 16, 18, 20, 22, 26)
DPI = 100
STYLES = ("printed", "handwritten")
# mathtext logs every glyph it borrows from STIX at INFO and dumps whole boxes on "Underful Vlist"
# warnings: thousands of lines of layout noise for one dataset.
logging.getLogger("matplotlib.mathtext").setLevel(logging.ERROR)


@lru_cache(maxsize=1)
def _parser():
    from matplotlib.mathtext import MathTextParser

    return MathTextParser("agg")


def render_mathtext(latex: str, fontset: str = "dejavusans", size: float = 20, dpi: int = DPI) -> np.ndarray:
    """(H, W) uint8, black ink on white; raises ValueError when mathtext cannot parse `latex`."""
    from matplotlib.font_manager import FontProperties

    parsed = _parser().parse(f"${latex}$", dpi=dpi, prop=FontProperties(size=size, math_fontfamily=fontset))
    coverage = np.asarray(parsed.image, dtype=np.uint8)  # ink coverage, 255 = full ink
    return 255 - coverage


def handwrite(gray: np.ndarray, seed: int) -> np.ndarray:
    """Handwriting-like variation: stroke width change, then grid and elastic distortion."""
    import albumentations as A
    import cv2

    rng = random.Random(seed)
    image = Image.fromarray(np.pad(gray, 12, constant_values=255))
    if rng.random() < 0.5:  # a 3x3 min filter spreads dark ink: a thicker pen
        image = image.filter(ImageFilter.MinFilter(3))
    border = {"border_mode": cv2.BORDER_CONSTANT, "fill": 255}
    distort = A.Compose(
        [
            A.GridDistortion(num_steps=rng.choice([3, 5]), distort_limit=0.15, p=1.0, **border),
            A.ElasticTransform(alpha=rng.uniform(5, 15), sigma=rng.uniform(4, 6), p=1.0, **border),
            A.Affine(rotate=(-2, 2), shear=(-6, 6), p=0.7, **border),
        ],
        seed=seed,
    )
    return distort(image=np.asarray(image))["image"]


def warm_up(style: str = "printed") -> None:
    render_mathtext("x")
    if style == "handwritten":
        handwrite(np.full((8, 8), 255, np.uint8), 0)


@dataclass(frozen=True)
class SynthImage:
    """An image the pipeline renders in its worker processes (picklable: just the recipe)."""

    latex: str
    fontset: str
    size: float
    style: str
    seed: int

    def render(self) -> np.ndarray:
        gray = render_mathtext(self.latex, self.fontset, self.size)
        return handwrite(gray, self.seed) if self.style == "handwritten" else gray
