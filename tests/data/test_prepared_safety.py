"""What ``ssd prepare`` may delete, and what a prepared split may read: only a folder it wrote
is replaced; a prepared split reads only files inside its folder, each opened once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from data_builders import good_voc, read_json, reasons

from ssd.data import validate as validate_module
from ssd.data.prepare import prepare_dataset
from ssd.data.prepared import PreparedSplit
from ssd.data.safety import UnsafePath, read_regular_file
from ssd.errors import DataError


def test_prepare_never_deletes_a_folder_it_did_not_write(tmp_path: Path, prepare_cfg) -> None:
    src = good_voc(tmp_path / "voc")
    mine = tmp_path / "prepared" / "ds"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("three years of work")
    with pytest.raises(DataError) as err:
        prepare_dataset(prepare_cfg("voc", src))
    assert str(err.value) == (
        f"{mine} holds files ssd prepare did not write (no report.json of a prepared "
        "dataset); nothing was changed: choose another data.name or data.prepared_root, or "
        "move those files away"
    )
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert not list((tmp_path / "prepared").glob(".*partial"))


def test_prepare_never_replaces_a_link(tmp_path: Path, prepare_cfg) -> None:
    src = good_voc(tmp_path / "voc")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("x")
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "ds").symlink_to(elsewhere)
    with pytest.raises(DataError, match="is a link or a file, not a prepared dataset"):
        prepare_dataset(prepare_cfg("voc", src))
    assert (elsewhere / "keep.txt").read_text() == "x"


def test_prepare_replaces_its_own_dataset(tmp_path: Path, prepare_cfg) -> None:
    src = good_voc(tmp_path / "voc")
    first = prepare_dataset(prepare_cfg("voc", src)).out_dir
    (first / "stale.txt").write_text("from the first run")
    again = prepare_dataset(prepare_cfg("voc", src)).out_dir
    assert again == first and not (first / "stale.txt").exists()


@pytest.fixture
def prepared(tmp_path: Path, prepare_cfg) -> Path:
    return prepare_dataset(prepare_cfg("voc", good_voc(tmp_path / "voc"))).out_dir


@pytest.mark.parametrize("name", ["../../secret.png", "/etc/hostname", "images/../../x.png"])
def test_a_split_naming_a_file_outside_the_prepared_dataset_is_refused(
    prepared: Path, name: str
) -> None:
    path = prepared / "train.json"
    coco = read_json(path)
    coco["images"][0]["file_name"] = name
    path.write_text(json.dumps(coco))
    with pytest.raises(DataError) as err:
        PreparedSplit.load(prepared, "train")
    assert f"has file_name {name!r}, which would be read from outside the prepared" in str(
        err.value
    )


def test_an_image_made_a_link_outside_after_prepare_is_not_read(
    prepared: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.jpg"
    split = PreparedSplit.load(prepared, "train")
    image = split.images[0]
    path = split.image_path(image)
    secret.write_bytes(path.read_bytes())  # a valid image: only the root rule refuses it
    path.unlink()
    path.symlink_to(secret)
    with pytest.raises(DataError) as err:
        split.read_image(image)
    assert f"leads to {secret}, outside the prepared dataset ({prepared}); refused" in str(
        err.value
    )


def test_an_image_swapped_for_a_link_after_its_check_is_not_copied(
    tmp_path: Path, prepare_cfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of a check then a second open by name: the image is swapped for a link to
    an outside file right after it was checked and decoded. The bytes written to the
    prepared dataset are the ones checked (read once), never the outside file's."""
    src = good_voc(tmp_path / "voc")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((src / "JPEGImages" / "im0.jpg").read_bytes() + b"SECRET")
    decode = validate_module.decode_image

    def decode_then_swap(data):  # type: ignore[no-untyped-def]
        decoded = decode(data)
        victim = src / "JPEGImages" / "im0.jpg"
        if not victim.is_symlink():
            victim.unlink()
            victim.symlink_to(outside)
        return decoded

    monkeypatch.setattr(validate_module, "decode_image", decode_then_swap)
    out = prepare_dataset(prepare_cfg("voc", src)).out_dir
    written = [p.read_bytes() for p in (out / "images").rglob("*") if p.is_file()]
    assert written and not any(b"SECRET" in data for data in written)


def test_a_file_swapped_for_a_link_between_resolving_and_opening_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O_NOFOLLOW on the resolved path: the last step of the race is refused too."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"inside")
    (tmp_path / "secret").write_bytes(b"outside")
    real_open = os.open

    def swap_then_open(path, flags, *args):  # type: ignore[no-untyped-def]
        if str(path).endswith("a.jpg"):
            os.unlink(path)
            os.symlink(tmp_path / "secret", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(UnsafePath, match="made a link while it was read"):
        read_regular_file(root / "a.jpg", root.resolve())


def test_prepare_reports_an_image_that_leads_outside(tmp_path: Path, prepare_cfg) -> None:
    src = good_voc(tmp_path / "voc")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((src / "JPEGImages" / "im1.jpg").read_bytes())
    (src / "JPEGImages" / "im1.jpg").unlink()
    (src / "JPEGImages" / "im1.jpg").symlink_to(outside)
    out = prepare_dataset(prepare_cfg("voc", src)).out_dir
    assert "unsafe_path" in reasons(read_json(out / "report.json"))
