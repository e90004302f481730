"""Film orientation decided from the flashed ID label.

A film fed upside down through the digitizer carries its flashed ID label upside
down too: when the label reads upright only after a half turn, the film is
turned by a half turn. A label whose text runs at 90 or 270 degrees decides
nothing (ID cards are often flashed sideways), and neither does a film without a
readable label: the orientation is then left as scanned and reported as
undecided. L/R lead markers are not used yet.
"""

from __future__ import annotations

import dataclasses

from pipeline.types import LabelReading, LabelRegion


def turns_from_label(region: LabelRegion | None) -> int | None:
    """Quarter turns (counter-clockwise, as ``numpy.rot90``) that make the film upright.

    Parameters
    ----------
    region : LabelRegion or None
        The label found on the straightened film; ``rotation_k`` is the quarter
        turns that made its text upright.

    Returns
    -------
    int or None
        2 when the label reads upside down; None when undecidable (no label, or
        text at 90/270 degrees) or already upright (0 turns needed is returned as 0).
    """
    if region is None:
        return None
    if region.rotation_k % 4 == 0:
        return 0
    if region.rotation_k % 4 == 2:
        return 2
    return None


def rotate_box(box: tuple[int, int, int, int], shape: tuple[int, int], k: int) -> tuple[int, int, int, int]:
    """A (row0, col0, row1, col1) half-open box of an image of ``shape`` after ``numpy.rot90(image, k)``."""
    r0, c0, r1, c1 = box
    h, w = shape
    k %= 4
    if k == 0:
        return box
    if k == 1:
        return (w - c1, r0, w - c0, r1)
    if k == 2:
        return (h - r1, w - c1, h - r0, w - c0)
    return (c0, h - r1, c1, h - r0)


def rotate_reading(reading: LabelReading, shape: tuple[int, int], k: int) -> LabelReading:
    """``reading`` with its label region moved to the film turned by ``k`` quarter turns.

    Parameters
    ----------
    reading : LabelReading
    shape : tuple (rows, cols)
        Shape of the film before the turn.
    k : int
        Quarter turns, counter-clockwise (``numpy.rot90``).
    """
    if reading.region is None or k % 4 == 0:
        return reading
    region = dataclasses.replace(reading.region, box=rotate_box(reading.region.box, shape, k),
                                 rotation_k=(reading.region.rotation_k - k) % 4)
    return dataclasses.replace(reading, region=region)
