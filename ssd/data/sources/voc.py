"""Pascal VOC reader: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/*.txt``.

XML is parsed with ``defusedxml`` (no entity expansion, no DTD, no external entities).
Coordinates are taken as written (``xmin``..``xmax`` in pixels, no 1-based shift), and
the ``difficult`` flag is kept. Splits come from ``ImageSets/Main/{train,val,test}.txt``
(``trainval.txt`` when ``train``/``val`` are absent); without ImageSets every annotation
is read and split by ratio. Class names are those of ``data.names_file`` when given
(others are reported as unknown), else every name found, sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import parse

from ssd.data import report as R
from ssd.data.errors import DataError
from ssd.data.records import RawBox, RawImage, SourceData
from ssd.data.safety import UnsafePath, resolve_inside
from ssd.data.sources.names import names_path, read_names

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class _Object:
    name: str
    corners: tuple[float, float, float, float]
    difficult: bool


@dataclass
class _Parsed:
    annotation: str
    image_rel: str
    image_path: Path
    size: tuple[int, int] | None
    split: str | None
    objects: list[_Object] = field(default_factory=list)


def _split_ids(
    root: Path, report: R.Report
) -> tuple[dict[str, str | None], dict[str, str], frozenset[str]]:
    """``{id: split}`` from ``ImageSets/Main`` (empty when there is none), and a description."""
    main = root / "ImageSets" / "Main"
    files = {s: main / f"{s}.txt" for s in ("train", "val", "trainval", "test")}
    use: list[tuple[str, str | None]] = []
    if files["train"].is_file() or files["val"].is_file():
        use += [(s, s) for s in ("train", "val") if files[s].is_file()]
    elif files["trainval"].is_file():
        use.append(("trainval", None))
    if files["test"].is_file():
        use.append(("test", "test"))
    ids: dict[str, str | None] = {}
    listed_in: dict[str, str] = {}
    for file_split, split in use:
        listing = f"ImageSets/Main/{file_split}.txt"
        try:
            lines = files[file_split].read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            report.skip(listing, "annotation", R.MALFORMED_ANNOTATION, f"unreadable: {err}")
            continue
        for line in lines:
            tokens = line.split()
            if not tokens:
                continue
            image_id = tokens[0]
            if image_id in listed_in:
                report.skip(
                    listing,
                    "image",
                    R.DUPLICATE_ID,
                    f"id {image_id} is also listed in {listed_in[image_id]}; kept there",
                )
                continue
            listed_in[image_id] = listing
            ids[image_id] = split
    described = {"splits_from": ", ".join(f"ImageSets/Main/{s}.txt" for s, _ in use) or "ratio"}
    return ids, described, frozenset(s for _, s in use if s is not None)


def _number(obj: Element, path: str) -> float:
    text = obj.findtext(path)
    if text is None:
        raise ValueError(f"missing <{path}>")
    return float(text.strip())


def _parse(
    root: Path,
    xml_path: Path,
    annotation: str,
    image_id: str,
    split: str | None,
    report: R.Report,
) -> _Parsed | None:
    try:
        tree = parse(xml_path, forbid_dtd=True)
    except DefusedXmlException as err:
        report.skip(
            annotation,
            "image",
            R.MALFORMED_ANNOTATION,
            f"XML uses forbidden constructs ({type(err).__name__}); entities/DTDs are refused",
        )
        return None
    except (ParseError, OSError, UnicodeDecodeError, ValueError) as err:
        report.skip(annotation, "image", R.MALFORMED_ANNOTATION, f"XML cannot be parsed: {err}")
        return None
    doc = tree.getroot()
    if doc is None or doc.tag != "annotation":
        report.skip(annotation, "image", R.MALFORMED_ANNOTATION, "root element is not <annotation>")
        return None
    images = root / "JPEGImages"
    filename = (doc.findtext("filename") or "").strip()
    if not filename:
        found = [
            images / f"{image_id}{s}"
            for s in IMAGE_SUFFIXES
            if (images / f"{image_id}{s}").is_file()
        ]
        filename = found[0].name if found else f"{image_id}.jpg"
    try:
        image_path = resolve_inside(images, filename)
    except UnsafePath as err:
        report.skip(annotation, "image", R.UNSAFE_PATH, f"<filename>: {err}")
        return None
    size: tuple[int, int] | None = None
    try:
        size = (int(_number(doc, "size/width")), int(_number(doc, "size/height")))
    except ValueError:
        size = None  # no usable <size>: the decoded size is used
    parsed = _Parsed(annotation, image_path.relative_to(images).as_posix(), image_path, size, split)
    for i, obj in enumerate(doc.iter("object")):
        name = (obj.findtext("name") or "").strip()
        try:
            corners = (
                _number(obj, "bndbox/xmin"),
                _number(obj, "bndbox/ymin"),
                _number(obj, "bndbox/xmax"),
                _number(obj, "bndbox/ymax"),
            )
            difficult = int(float((obj.findtext("difficult") or "0").strip() or 0)) == 1
        except ValueError as err:
            report.skip(annotation, "box", R.MALFORMED_BOX, f"object {i} ({name}): {err}")
            continue
        if not name:
            report.skip(annotation, "box", R.MALFORMED_BOX, f"object {i} has no <name>")
            continue
        parsed.objects.append(_Object(name, corners, difficult))
    return parsed


def read_voc(root: Path, report: R.Report, names_file: str | None = None) -> SourceData:
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise DataError(
            f"{root} has no Annotations/ folder; a Pascal VOC dataset needs Annotations/, "
            "JPEGImages/ and optionally ImageSets/Main/ (or set data.source to coco or yolo)"
        )
    ids, description, declared = _split_ids(root, report)
    if ids:
        listed = set(ids)
        for xml in sorted(annotations.glob("*.xml")):
            if xml.stem not in listed:
                report.skip(
                    f"Annotations/{xml.name}",
                    "image",
                    R.NOT_IN_SPLIT,
                    "not listed in any ImageSets/Main split file",
                )
    else:
        ids = {xml.stem: None for xml in sorted(annotations.glob("*.xml"))}

    parsed: list[_Parsed] = []
    for image_id, split in sorted(ids.items()):
        annotation = f"Annotations/{image_id}.xml"
        try:
            xml_path = resolve_inside(annotations, f"{image_id}.xml")
        except UnsafePath as err:
            report.skip(annotation, "image", R.UNSAFE_PATH, f"image id: {err}")
            continue
        if not xml_path.is_file():
            report.skip(annotation, "image", R.MISSING_ANNOTATION, f"id {image_id} has no XML")
            continue
        item = _parse(root, xml_path, annotation, image_id, split, report)
        if item is not None:
            parsed.append(item)

    if names_file:
        classes = read_names(names_path(root, names_file))
    else:
        classes = sorted({o.name for p in parsed for o in p.objects})
    index = {name: i for i, name in enumerate(classes)}

    images: list[RawImage] = []
    for p in parsed:
        boxes: list[RawBox] = []
        for o in p.objects:
            if o.name not in index:
                report.skip(
                    p.annotation,
                    "box",
                    R.UNKNOWN_CLASS,
                    f"class '{o.name}' is not in {names_file}: {', '.join(classes)}",
                )
                continue
            x1, y1, x2, y2 = o.corners
            boxes.append(RawBox(x1, y1, x2, y2, label=index[o.name], difficult=o.difficult))
        images.append(
            RawImage(
                file_name=p.image_rel,
                annotation=p.annotation,
                path=p.image_path,
                annotated_size=p.size,
                boxes=boxes,
                split=p.split,
            )
        )
    # Images no annotation refers to are reported too: nothing is dropped silently.
    used = {p.image_path.resolve() for p in parsed}
    known = set(ids) | {xml.stem for xml in annotations.glob("*.xml")}
    jpeg = root / "JPEGImages"
    for f in sorted(jpeg.rglob("*")) if jpeg.is_dir() else []:
        if f.suffix.lower() in IMAGE_SUFFIXES and f.stem not in known and f.resolve() not in used:
            report.skip(
                f"JPEGImages/{f.relative_to(jpeg).as_posix()}",
                "image",
                R.MISSING_ANNOTATION,
                f"no Annotations/{f.stem}.xml for this image",
            )
    return SourceData(
        classes=classes, images=iter(images), description=description, splits=declared
    )
