"""Train / val / test assignment: the source's split where it has one, otherwise a seeded
split by ratio. Missing splits are carved out of the unassigned (or train) images, except
a missing test when the source gives train and val: the source's splits are kept as given
and test is the val split (how each split was made is returned and printed)."""

from __future__ import annotations

import numpy as np

from ssd.data.prepared import SPLITS


def _take(n_total: int, ratio: float, available: int) -> int:
    """How many images a ``ratio`` of ``n_total`` is: at least one when the ratio is > 0."""
    if ratio <= 0 or available <= 1:
        return 0
    return min(max(1, round(n_total * ratio)), available - 1)


def assign_splits(
    names: list[str],
    source_splits: list[str | None],
    val_ratio: float,
    test_ratio: float,
    seed: int,
    declared: frozenset[str] = frozenset(),
) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Return each image's split, per split where it came from, and the splits that are
    another one (``{"test": "val"}``: test.json holds the val images).

    ``names`` are the unique output file names (they fix the order, so the result only
    depends on the set of images and the seed). Images the source put in no split form a
    pool; when the source has no ``val`` (``test``), ``val_ratio`` (``test_ratio``) of all
    images is drawn at random from the pool, or from ``train`` when the pool is empty.
    Whatever is left in the pool goes to ``train``. A split in ``declared`` (defined by the
    source) is never carved, even if none of its images survived: it stays empty. When the
    source gives ``train`` and ``val`` but no ``test`` and no image is left over, ``test``
    is ``val`` (carving it from train would leave train smaller than the source made it).
    """
    order = sorted(range(len(names)), key=lambda i: names[i])
    result: list[str | None] = list(source_splits)
    present = {s for s in source_splits if s is not None} | set(declared)
    origin = {s: "source" for s in SPLITS if s in present}
    rng = np.random.default_rng(seed)
    n_total = len(names)
    same_as: dict[str, str] = {}
    unassigned = any(s is None for s in result)
    if "test" not in present and {"train", "val"} <= present and not unassigned:
        same_as["test"] = "val"
        origin["test"] = "test is the source's val (the source has train and val, no test)"
    for split, ratio in (("test", test_ratio), ("val", val_ratio)):
        if split in present or split in same_as:
            continue
        pool = [i for i in order if result[i] is None]
        pool_name = "the images in no split"
        if not pool:
            pool = [i for i in order if result[i] == "train"]
            pool_name = "the source's train"
        n = _take(n_total, ratio, len(pool))
        picked = rng.permutation(len(pool))[:n]
        for j in sorted(picked.tolist()):
            result[pool[j]] = split
        where = f", taken from {pool_name}" if present else ""  # no split at all: say less
        origin[split] = f"random {ratio:.0%} of the images{where} (seed {seed})"
    if any(s is None for s in result):
        origin["train"] = "source + rest" if "train" in present else "the rest"
    final = [s if s is not None else "train" for s in result]
    return final, {s: origin.get(s, "source") for s in SPLITS}, same_as
