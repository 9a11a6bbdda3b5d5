"""Placeholder video tiles: a coloured frame with a participant's name.

No font library is available (PyAV's FFmpeg has no ``drawtext``, and Pillow is
not a dependency), so names are drawn with a built-in 5x7 bitmap font, scaled
up with ``np.kron``. Letters are upper-cased; a character outside the font is
drawn as ``?``.
"""

from __future__ import annotations

import functools
import hashlib

import av
import numpy as np
import numpy.typing as npt

# 5x7 glyphs: seven rows, two hex digits each, bit 4 is the leftmost pixel.
_GLYPHS = {
    "A": "0E1111111F1111", "B": "1E11111E11111E", "C": "0E11101010110E",
    "D": "1C12111111121C", "E": "1F10101E10101F", "F": "1F10101E101010",
    "G": "0E11101711110F", "H": "1111111F111111", "I": "0E04040404040E",
    "J": "0702020202120C", "K": "11121418141211", "L": "1010101010101F",
    "M": "111B1515111111", "N": "11111915131111", "O": "0E11111111110E",
    "P": "1E11111E101010", "Q": "0E11111115120D", "R": "1E11111E141211",
    "S": "0F10100E01011E", "T": "1F040404040404", "U": "1111111111110E",
    "V": "11111111110A04", "W": "1111111515150A",
    "X": "11110A040A1111", "Y": "1111110A040404", "Z": "1F01020408101F",
    "0": "0E11131519110E", "1": "040C040404040E", "2": "0E11010204081F",
    "3": "1F02040201110E", "4": "02060A121F0202", "5": "1F101E0101110E",
    "6": "0608101E11110E", "7": "1F010204080808", "8": "0E11110E11110E",
    "9": "0E11110F01020C", " ": "00000000000000", "-": "0000001F000000",
    ".": "00000000000C0C", "?": "0E110102040004", "'": "0C040800000000",
}  # fmt: skip

WIDTH = 640
HEIGHT = 480
MAX_LABEL = 20


def _glyph(char: str) -> npt.NDArray[np.uint8]:
    code = _GLYPHS.get(char, _GLYPHS["?"])
    rows = [int(code[i : i + 2], 16) for i in range(0, 14, 2)]
    bits = np.array(rows, dtype=np.uint8)[:, None] >> np.arange(4, -1, -1)
    return (bits & 1).astype(np.uint8)


def render_text(text: str, scale: int) -> npt.NDArray[np.uint8]:
    """A 0/1 mask of ``text`` in the bitmap font, ``scale`` pixels a dot."""
    text = text.upper() or " "
    spacer = np.zeros((7, 1), dtype=np.uint8)
    parts: list[npt.NDArray[np.uint8]] = []
    for char in text:
        parts += [_glyph(char), spacer]
    mask = np.hstack(parts[:-1])
    return np.kron(mask, np.ones((scale, scale), dtype=np.uint8))


def _colour(label: str) -> tuple[int, int, int]:
    # a stable, muted background colour per name
    digest = hashlib.sha256(label.encode("utf-8")).digest()
    return (40 + digest[0] % 80, 40 + digest[1] % 80, 60 + digest[2] % 80)


@functools.lru_cache(maxsize=64)
def placeholder_frame(
    label: str, width: int = WIDTH, height: int = HEIGHT
) -> av.VideoFrame:
    """A ``yuv420p`` frame: a coloured tile with ``label`` centred on it."""
    label = label[:MAX_LABEL]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = _colour(label)

    scale = max(1, min((width - 40) // max(1, 6 * len(label)), height // 14))
    mask = render_text(label, scale)
    top = (height - mask.shape[0]) // 2
    left = (width - mask.shape[1]) // 2
    region = image[top : top + mask.shape[0], left : left + mask.shape[1]]
    region[mask.astype(bool)] = (235, 235, 235)

    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    return frame.reformat(format="yuv420p")
