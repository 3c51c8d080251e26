"""Pascal VOC reader: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/*.txt``.

The annotation and image folders may have other names (``annots/``, ``images/``):
``data.annotations_dir`` and ``data.images_dir``. XML is parsed with ``defusedxml`` (no
entity expansion, no DTD, no external entities). Coordinates are taken as written
(``xmin``..``xmax`` in pixels, no 1-based shift), and the ``difficult`` flag is kept.
Splits come from ``ImageSets/Main/{train,val,test}.txt`` (``trainval.txt`` when
``train``/``val`` are absent); without ImageSets every annotation is read and split by
ratio. Class names are those of ``data.names_file`` when given (others are reported as
unknown), else every name found, sorted. Every file is read through the dataset root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from ssd.data import report as R
from ssd.errors import DataError
from ssd.data.images import IMAGE_SUFFIXES
from ssd.data.records import RawBox, RawImage, SourceData
from ssd.data.safety import DatasetRoot, UnsafePath
from ssd.data.sources.names import names_path, read_names


@dataclass
class _Object:
    name: str
    corners: tuple[float, float, float, float]
    difficult: bool


@dataclass
class _Parsed:
    annotation: str
    image_rel: str
    image_path: Path | None
    size: tuple[int, int] | None
    split: str | None
    objects: list[_Object] = field(default_factory=list)
    refused: tuple[str, str] | None = None


def _split_ids(
    root: DatasetRoot, report: R.Report
) -> tuple[dict[str, str | None], dict[str, str], frozenset[str]]:
    """``{id: split}`` from ``ImageSets/Main`` (empty when there is none), and a description."""
    main = root.path / "ImageSets" / "Main"
    files = {s: main / f"{s}.txt" for s in ("train", "val", "trainval", "test")}
    use: list[tuple[str, str | None]] = []
    if root.is_file(files["train"]) or root.is_file(files["val"]):
        use += [(s, s) for s in ("train", "val") if root.is_file(files[s])]
    elif root.is_file(files["trainval"]):
        use.append(("trainval", None))
    if root.is_file(files["test"]):
        use.append(("test", "test"))
    ids: dict[str, str | None] = {}
    listed_in: dict[str, str] = {}
    for file_split, split in use:
        listing = f"ImageSets/Main/{file_split}.txt"
        try:
            lines = root.read_text(files[file_split]).splitlines()
        except UnsafePath as err:
            report.skip(listing, "annotation", R.UNSAFE_PATH, str(err))
            continue
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
    root: DatasetRoot,
    images: Path,
    xml_path: Path,
    annotation: str,
    image_id: str,
    split: str | None,
    report: R.Report,
) -> _Parsed | None:
    try:
        doc = fromstring(root.read_bytes(xml_path), forbid_dtd=True)
    except UnsafePath as err:
        report.skip(annotation, "image", R.UNSAFE_PATH, f"{err} (its boxes were not read)")
        return None
    except DefusedXmlException as err:
        report.skip(
            annotation,
            "image",
            R.MALFORMED_ANNOTATION,
            f"XML uses forbidden constructs ({type(err).__name__}); entities/DTDs are refused",
        )
        return None
    except RecursionError:
        report.skip(annotation, "image", R.MALFORMED_ANNOTATION, "XML is nested too deeply")
        return None
    except (ParseError, OSError, UnicodeDecodeError, ValueError) as err:
        first = str(err).splitlines()[0][:200]
        report.skip(annotation, "image", R.MALFORMED_ANNOTATION, f"XML cannot be parsed: {first}")
        return None
    if doc is None or doc.tag != "annotation":
        report.skip(annotation, "image", R.MALFORMED_ANNOTATION, "root element is not <annotation>")
        return None
    filename = (doc.findtext("filename") or "").strip()
    if not filename:
        found = [
            images / f"{image_id}{s}"
            for s in IMAGE_SUFFIXES
            if root.is_file(images / f"{image_id}{s}")
        ]
        filename = found[0].name if found else f"{image_id}.jpg"
    size: tuple[int, int] | None = None
    try:
        size = (int(_number(doc, "size/width")), int(_number(doc, "size/height")))
    except (ValueError, OverflowError):
        size = None  # no usable <size>: the decoded size is used
    try:
        image_path = root.join(images, filename)
        rel = image_path.relative_to(images).as_posix()
        parsed = _Parsed(annotation, rel, image_path, size, split)
    except UnsafePath as err:
        parsed = _Parsed(annotation, "", None, size, split)
        parsed.refused = (R.UNSAFE_PATH, f"<filename>: {err}")
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
        except (ValueError, OverflowError) as err:
            report.skip(annotation, "box", R.MALFORMED_BOX, f"object {i} ({name}): {err}")
            continue
        if not name:
            report.skip(annotation, "box", R.MALFORMED_BOX, f"object {i} has no <name>")
            continue
        parsed.objects.append(_Object(name, corners, difficult))
    return parsed


def _folder(root: DatasetRoot, option: str | None, default: str, key: str) -> Path:
    """The annotation or image folder: ``data.<key>`` when set, else ``default``, or the one
    folder whose name is ``default`` in other letter case (``annotations/``, ``jpegimages``)."""
    if option:
        return root.option(option, key)
    exact = root.path / default
    if exact.is_dir():
        return exact
    try:
        alike = [p for p in root.path.iterdir() if p.name.lower() == default.lower()]
    except OSError:
        alike = []
    return alike[0] if len(alike) == 1 and alike[0].is_dir() else exact


def _missing_annotations(root: DatasetRoot, annotations: Path, key: str, option: str | None) -> str:
    try:
        folders = sorted(p.name + "/" for p in root.path.iterdir() if p.is_dir())
    except OSError:
        folders = []
    where = f"data.{key} '{option}'" if option else f"{root.path} has no Annotations/ folder;"
    return (
        f"{where} {'is not a folder; ' if option else ''}a Pascal VOC dataset needs a folder of "
        f"XML files and one of images (it has: {', '.join(folders) or 'no folders'}); set "
        "data.annotations_dir and data.images_dir to them (e.g. annots, images), or set "
        "data.source to coco or yolo"
    )


def read_voc(
    root: DatasetRoot,
    report: R.Report,
    names_file: str | None = None,
    annotations_dir: str | None = None,
    images_dir: str | None = None,
) -> SourceData:
    annotations = _folder(root, annotations_dir, "Annotations", "annotations_dir")
    images = _folder(root, images_dir, "JPEGImages", "images_dir")
    if not root.is_dir(annotations):
        raise DataError(_missing_annotations(root, annotations, "annotations_dir", annotations_dir))
    root.is_dir(images)  # a folder of images that leads outside the root stops here
    ann_name = root.name(annotations)
    ids, description, declared = _split_ids(root, report)
    xml_files = sorted(annotations.glob("*.xml"))
    if ids:
        listed = set(ids)
        for xml in xml_files:
            if xml.stem not in listed:
                # parsed only to count its boxes (its own problems are not the run's)
                unused = _parse(root, images, xml, "", xml.stem, None, R.Report())
                report.skip_image(
                    f"{ann_name}/{xml.name}",
                    R.NOT_IN_SPLIT,
                    "not listed in any ImageSets/Main split file",
                    len(unused.objects) if unused is not None else 0,
                )
    else:
        ids = {xml.stem: None for xml in xml_files}

    parsed: list[_Parsed] = []
    for image_id, split in sorted(ids.items()):
        annotation = f"{ann_name}/{image_id}.xml"
        try:
            xml_path = root.join(annotations, f"{image_id}.xml")
        except UnsafePath as err:
            report.skip(annotation[:300], "image", R.UNSAFE_PATH, f"image id: {err}")
            continue
        if not root.is_file(xml_path):
            report.skip_image(annotation, R.MISSING_ANNOTATION, f"id {image_id} has no XML", 0)
            continue
        item = _parse(root, images, xml_path, annotation, image_id, split, report)
        if item is not None:
            parsed.append(item)

    if names_file:
        classes = read_names(root, names_path(root, names_file))
    else:
        classes = sorted({o.name for p in parsed for o in p.objects})
    index = {name: i for i, name in enumerate(classes)}

    raw_images: list[RawImage] = []
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
        raw_images.append(
            RawImage(
                file_name=p.image_rel,
                annotation=p.annotation,
                path=p.image_path,
                annotated_size=p.size,
                boxes=boxes,
                split=p.split,
                refused=p.refused,
            )
        )
    # Images no annotation refers to are reported too: nothing is dropped silently.
    used = {p.image_path.resolve() for p in parsed if p.image_path is not None}
    known = set(ids) | {xml.stem for xml in xml_files}
    img_name = root.name(images)
    for f in sorted(images.rglob("*")) if images.is_dir() else []:
        if f.suffix.lower() in IMAGE_SUFFIXES and f.stem not in known and f.resolve() not in used:
            report.skip_image(
                f"{img_name}/{f.relative_to(images).as_posix()}",
                R.MISSING_ANNOTATION,
                f"no {ann_name}/{f.stem}.xml for this image",
                0,
            )
    description = {**description, "annotations": ann_name, "images": img_name}
    return SourceData(
        classes=classes,
        images=iter(raw_images),
        description=description,
        splits=declared,
        root=root,
        labels_at=f"the <object> elements of {ann_name}/*.xml",
    )
