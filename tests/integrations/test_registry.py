"""The champion alias moves only on improvement, and the reason is always given."""

from __future__ import annotations

import pytest

from ssd.errors import RegistryError
from ssd.integrations.registry import decide_champion, register_detector


def test_first_version_becomes_champion() -> None:
    promote, reason = decide_champion(0.4, None, "map")
    assert promote and "becomes champion" in reason


def test_better_version_takes_the_alias() -> None:
    promote, reason = decide_champion(0.5, 0.4, "map")
    assert promote and "beats the champion's 0.4000" in reason


@pytest.mark.parametrize("new", [0.4, 0.3, 0.4009])
def test_equal_or_worse_version_stays_without_the_alias(new: float) -> None:
    promote, reason = decide_champion(new, 0.4, "map", min_delta=0.001)
    assert not promote and "alias unchanged" in reason


def test_a_tie_printed_alike_never_moves_the_alias() -> None:
    """0.49871 vs 0.4987 used to read "map 0.4987 beats the champion's 0.4987"."""
    promote, reason = decide_champion(0.49871, 0.4987, "map", min_delta=0.001)
    assert not promote and "does not beat the champion's 0.4987 by more than 0.001" in reason


def test_missing_inputs_are_named(tmp_path) -> None:
    with pytest.raises(RegistryError, match="run `ssd train` first"):
        register_detector(tmp_path / "none", tmp_path / "m.json", None, tmp_path / "r.json")
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(RegistryError, match="run `ssd evaluate` first"):
        register_detector(tmp_path / "det", tmp_path / "m.json", None, tmp_path / "r.json")
    (tmp_path / "m.json").write_text('{"map50": 0.5}')
    with pytest.raises(RegistryError, match=r"'map' is not in .* choose one of map50"):
        register_detector(tmp_path / "det", tmp_path / "m.json", None, tmp_path / "r.json")
