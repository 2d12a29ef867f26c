"""Pen input: InkML files read into traces and rendered to a grayscale image for the usual image path.

    image = render_inkml(Path("x.inkml"), InkOptions())      # (H, W) uint8, black ink on white

Writers' devices differ by orders of magnitude in coordinate range (CROHME's HAMEX spans ~1 unit, KAIST
~2,500), so an expression is scaled by its own handwriting, not by its box: the median trace extent (about
one symbol) becomes `symbol_px`. A fraction then renders taller than `a+b`, as it would on paper, and one
symbol is about the same size in every collection. Strokes are drawn `stroke_px` wide with round joins;
the pipeline's crop and downsample that follow do the anti-aliasing. The options travel in the manifest
and the checkpoint so `predict` renders pen input exactly as training did.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from data_prep.images import ImageRejected

LABEL_FIELDS = ("auto", "truth", "normalizedLabel", "label")
# auto: CROHME's truth first, then MathWriting's normalised label, then its raw one.
_AUTO_ORDER = ("truth", "normalizedLabel", "label")
_MAX_TRACES = 5_000
_MAX_POINTS = 1_000_000


class InkRejected(ImageRejected):
    """A pen-input file that cannot be used; the message is the manifest's reason."""


@dataclass(frozen=True)
class InkOptions:
    symbol_px: float = 32.0  # the median trace extent (about one symbol) after scaling
    stroke_px: float = 3.0  # pen width at that scale
    max_width_px: int = 4096  # an expression wider than this (at symbol_px) is shrunk to fit ...
    max_height_px: int = 1024
    max_shrink: float = 4.0  # ... unless that needs more than this factor: an absurd coordinate range
    label_field: str = "auto"  # which annotation holds the LaTeX (see LABEL_FIELDS)

    def __post_init__(self):
        if not (self.symbol_px >= 4 and math.isfinite(self.symbol_px)):
            raise ValueError(f"ink symbol_px must be a number >= 4, got {self.symbol_px}")
        if not (0 < self.stroke_px <= self.symbol_px):
            raise ValueError(f"ink stroke_px must be in (0, symbol_px], got {self.stroke_px}")
        if self.max_width_px < self.symbol_px or self.max_height_px < self.symbol_px:
            raise ValueError("ink max_width_px / max_height_px must be at least symbol_px")
        if not self.max_shrink >= 1:
            raise ValueError(f"ink max_shrink must be >= 1, got {self.max_shrink}")
        if self.label_field not in LABEL_FIELDS:
            raise ValueError(f"ink label_field {self.label_field!r}: use one of {', '.join(LABEL_FIELDS)}")

    @classmethod
    def from_dict(cls, raw: dict | None) -> InkOptions:
        """From a manifest's or checkpoint's `ink` entry; keys a newer version added are ignored."""
        known = {k: v for k, v in (raw or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class InkDocument:
    traces: list[np.ndarray]  # each (N, 2) float64: x, y in the writer's own units
    annotations: dict[str, str]  # type -> text, the first of each type

    def label(self, field: str = "auto") -> str | None:
        for name in _AUTO_ORDER if field == "auto" else (field,):
            text = self.annotations.get(name)
            if text is not None and text.strip():
                return text.strip()
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_inkml(path: Path) -> InkDocument:
    """Traces and annotations of one InkML file; raises InkRejected saying why it cannot be used."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise InkRejected(f"empty file {path.name}")
        root = ET.parse(path).getroot()
    except (ET.ParseError, LookupError, ValueError) as e:  # LookupError: an unknown declared encoding
        raise InkRejected(f"malformed InkML {path.name}: {e}") from None
    except OSError as e:
        raise InkRejected(f"unreadable InkML {path.name}: {e.strerror or e}") from None
    annotations: dict[str, str] = {}
    channels: list[str] = []
    raw_traces: list[str] = []
    for el in root:  # the expression's own annotations: a traceGroup's truth is one symbol's
        if isinstance(el.tag, str) and _local(el.tag) == "annotation" and el.get("type"):
            annotations.setdefault(el.get("type"), el.text or "")
    for el in root.iter():
        tag = _local(el.tag) if isinstance(el.tag, str) else ""
        if tag == "channel" and not raw_traces:
            channels.append((el.get("name") or "").upper())
        elif tag == "trace":
            raw_traces.append(el.text or "")
    if len(raw_traces) > _MAX_TRACES:
        raise InkRejected(f"{len(raw_traces)} traces in {path.name} (more than {_MAX_TRACES})")
    x_at, y_at = _xy_columns(channels)
    traces = [_parse_trace(text, i, x_at, y_at, path.name) for i, text in enumerate(raw_traces)]
    return InkDocument([t for t in traces if len(t)], annotations)


def _xy_columns(channels: list[str]) -> tuple[int, int]:
    if "X" in channels and "Y" in channels:
        return channels.index("X"), channels.index("Y")
    return 0, 1  # no traceFormat: InkML's default context is X Y


def _parse_trace(text: str, index: int, x_at: int, y_at: int, name: str) -> np.ndarray:
    points = [p.split() for p in text.replace("\n", " ").split(",")]
    points = [p for p in points if p]
    if sum(len(p) for p in points) > _MAX_POINTS:
        raise InkRejected(f"trace {index} of {name} has more than {_MAX_POINTS} values")
    need = max(x_at, y_at) + 1
    try:
        xy = np.array([(float(p[x_at]), float(p[y_at])) for p in points], dtype=np.float64)
    except ValueError as e:
        raise InkRejected(f"trace {index} of {name} has a non-numeric value ({e})") from None
    except IndexError:
        raise InkRejected(f"trace {index} of {name} has a point with fewer than {need} values") from None
    if xy.size and not np.isfinite(xy).all():
        raise InkRejected(f"trace {index} of {name} has a non-finite value (inf or nan)")
    return xy.reshape(-1, 2)


def render_traces(traces: list[np.ndarray], options: InkOptions, name: str = "ink") -> np.ndarray:
    """(H, W) uint8: the traces drawn black on white at the scale the options fix."""
    strokes = [t for t in traces if len(np.unique(t, axis=0)) >= 2]
    if not traces:
        raise InkRejected(f"no traces in {name}")
    if not strokes:
        raise InkRejected(f"no strokes in {name}: every trace is a single point")
    scale = options.symbol_px / _symbol_extent(strokes)
    points = np.concatenate(traces)
    low = points.min(axis=0)
    width, height = (points.max(axis=0) - low) * scale
    shrink = max(1.0, width / options.max_width_px, height / options.max_height_px)
    if shrink > options.max_shrink:
        raise InkRejected(
            f"absurd coordinate range in {name}: the expression spans {width:.0f}x{height:.0f} px at "
            f"symbol_px={options.symbol_px:g} (a stray point far from the rest?)"
        )
    scale /= shrink
    pad = math.ceil(options.stroke_px) + 1
    size = (int(width / shrink) + 2 * pad + 1, int(height / shrink) + 2 * pad + 1)
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    stroke = max(1, round(options.stroke_px))
    radius = options.stroke_px / 2
    for trace in traces:
        xy = (trace - low) * scale + pad
        flat = [(float(x), float(y)) for x, y in xy]
        if len(flat) >= 2:
            draw.line(flat, fill=0, width=stroke, joint="curve")
        for x, y in (flat[0], flat[-1]):  # round pen ends; a one-point trace is a dot (i, decimal point)
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    return np.asarray(image)


def _symbol_extent(strokes: list[np.ndarray]) -> float:
    """The median over strokes of the larger side of each stroke's box: about one symbol's size."""
    extents = [float((s.max(axis=0) - s.min(axis=0)).max()) for s in strokes]
    extent = float(np.median(extents))
    if extent <= 0 or not math.isfinite(extent):
        raise InkRejected("strokes with no extent")
    return extent


def render_inkml(path: Path, options: InkOptions) -> np.ndarray:
    return render_traces(read_inkml(path).traces, options, Path(path).name)


@dataclass(frozen=True)
class InkmlImage:
    """An ImageSource for the pipeline's worker pool: the file is read again there, so only a path and
    the options cross the process boundary (MathWriting has 230 k files)."""

    path: Path
    options: InkOptions

    def render(self) -> np.ndarray:
        return render_inkml(self.path, self.options)


__all__ = ["InkDocument", "InkOptions", "InkRejected", "InkmlImage", "LABEL_FIELDS", "read_inkml",
           "render_inkml", "render_traces"]  # fmt: skip
