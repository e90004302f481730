"""Film orientation decided from the flashed ID label and the L/R lead marker.

Two cues, each "the film reads upright after k quarter turns" (``numpy.rot90``):

* the label: a film fed upside down through the digitizer carries its flashed ID
  label upside down too. A label at 0 or 180 degrees is a cue; a label whose text
  runs at 90 or 270 degrees is not one by itself (ID cards are often flashed
  sideways), but it rules out the film turn opposite to it (a card is not flashed
  upside down on a film);
* the lead marker (:mod:`pipeline.marker`): technicians usually lay the letter
  upright on the cassette, so the turn that makes it read upright is the film's,
  when it was read confidently and not mirrored. Usually: a marker laid at a wrong
  turn is common enough that it does not decide alone by default.

:func:`decide_turns` combines them, conservatively: the label at 0/180 degrees decides
as before unless a marker contradicts it; a marker agreeing with the label confirms it,
and a marker agreeing with a sideways label decides a quarter turn. Conflicting cues
leave the film as scanned, reported as undecided with the reason.
"""

from __future__ import annotations

import dataclasses

from pipeline.marker import MarkerReading
from pipeline.types import LabelReading, LabelRegion


@dataclasses.dataclass(frozen=True)
class OrientationDecision:
    """The turn that makes a film upright, and why.

    Attributes
    ----------
    turns : int or None
        Quarter turns (counter-clockwise, ``numpy.rot90``) to apply, 0..3; None = undecided
        (leave the film as scanned).
    source : str
        ``label``, ``marker``, ``label+marker``, or ``''`` when undecided.
    note : str
        Plain-language reason (for the report and the ``orientation_undecided`` finding).
    """

    turns: int | None
    source: str = ""
    note: str = ""

    @property
    def decided(self) -> bool:
        return self.turns is not None


def decide_turns(label_k: int | None, marker_k: int | None, *, marker_alone: bool = False,
                 label_alone: bool = True) -> OrientationDecision:
    """Combine the label's and the marker's orientation cues.

    Parameters
    ----------
    label_k : int or None
        Quarter turns that make the label text upright (``LabelRegion.rotation_k``), or
        None without a readable label.
    marker_k : int or None
        Quarter turns that make a confidently read, non-mirrored lead marker upright
        (``MarkerReading.rotation_k`` when ``MarkerReading.confident``), or None.
    marker_alone : bool
        Let a marker at 0/180 degrees decide by itself when the label is missing or
        sideways. Off by default: a marker laid on the cassette at a wrong turn then
        turns the film wrongly (bench/marker_accuracy.py measures it).
    label_alone : bool
        Let a label at 0/180 degrees decide without a marker (the rule before markers; on
        by default). Off, only agreeing cues decide: a card flashed sideways on a film fed
        sideways reads at 0/180 and turns the film wrongly, which this avoids at the price
        of fewer decided films (bench/marker_accuracy.py, the "strict" row).

    Returns
    -------
    OrientationDecision

    Notes
    -----
    ======================  =============  ====================================
    label                   marker         decision
    ======================  =============  ====================================
    0 / 180                 none           the label's turn (as before markers)
    0 / 180                 same turn      that turn
    0 / 180                 other turn     undecided (conflict)
    90 / 270                same turn      that quarter turn
    90 / 270                opposite 90    undecided (conflict)
    90 / 270                0 / 180        undecided (``marker_alone``: the marker's turn)
    none                    0 / 180        undecided (``marker_alone``: the marker's turn)
    none                    90 / 270       undecided (a quarter turn needs both cues)
    90 / 270, or none       none           undecided
    ======================  =============  ====================================
    """
    lk = None if label_k is None else label_k % 4
    mk = None if marker_k is None else marker_k % 4
    if lk is None and mk is None:
        return OrientationDecision(None, "", "no readable label or lead marker")
    if mk is None:
        if lk in (0, 2) and label_alone:
            return OrientationDecision(lk, "label", "label")
        if lk in (0, 2):
            return OrientationDecision(None, "", "label only, no lead marker to confirm it")
        return OrientationDecision(None, "", "label text runs sideways and no lead marker was read")
    if lk == mk:
        return OrientationDecision(lk, "label+marker", "label and lead marker agree")
    if lk is not None and (lk in (0, 2) or (mk - lk) % 4 == 2):
        return OrientationDecision(None, "", f"label ({90 * lk} deg) and lead marker ({90 * mk} deg) disagree")
    if mk in (0, 2) and marker_alone:
        return OrientationDecision(mk, "marker", "lead marker" + ("; label sideways" if lk is not None else ""))
    if lk is None:
        return OrientationDecision(None, "", f"only the lead marker reads ({90 * mk} deg); the label is missing")
    return OrientationDecision(None, "", f"label sideways ({90 * lk} deg), lead marker at {90 * mk} deg: not decidable")


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

    See Also
    --------
    decide_turns : the label combined with the lead marker.
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


def rotate_marker(reading: MarkerReading, shape: tuple[int, int], k: int) -> MarkerReading:
    """``reading`` with its marker box and turn moved to the film turned by ``k`` quarter turns.

    Parameters
    ----------
    reading : MarkerReading
    shape : tuple (rows, cols)
        Shape of the film before the turn.
    k : int
        Quarter turns, counter-clockwise (``numpy.rot90``).
    """
    if reading.box is None or k % 4 == 0:
        return reading
    turn = None if reading.rotation_k is None else (reading.rotation_k - k) % 4
    return dataclasses.replace(reading, box=rotate_box(reading.box, shape, k), rotation_k=turn)
