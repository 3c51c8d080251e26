"""Fixtures of the evaluation tests; the builders live in ``eval_cases.py``."""

from __future__ import annotations

from typing import Any

import pytest
from eval_cases import coco_dict, random_case


@pytest.fixture
def toy_case() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    images, anns, dets = random_case(seed=1)
    return coco_dict(images, anns, 4), dets
