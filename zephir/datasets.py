"""Datasets: the photos embedded in installed packages, and the paper's datasets under data/.

The embedded default needs no download: scikit-image and scikit-learn ship a handful of natural
photos. The paper's datasets (DIV2K, RealSR, DRealSR, RealDeg) live under ``data/``, tracked by
DVC; :func:`check` reports which are there.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from zephir import extras
from zephir import io as zio


def _skimage(name: str, index: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        img = getattr(extras.require("skimage.data"), name)()
        return img[index] if index is not None else img

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return extras.require("sklearn.datasets").load_sample_image(name)

    return load


def _pyiqa(name: str) -> Callable[[], np.ndarray]:
    """A reference photo of pyiqa's calibration set (Kodak photos at TID2013's 512 x 384,
    lossless BMP), read from the installed pyiqa distribution."""
    def load() -> np.ndarray:
        from importlib import metadata

        import cv2

        rel = f"ResultsCalibra/ref_dir/{name}.bmp"
        try:
            dist = metadata.distribution("pyiqa")
        except metadata.PackageNotFoundError:
            extras.require("pyiqa")  # not installed: the error names the extra
            raise
        path = Path(str(dist.locate_file(rel)))
        img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if img is None:
            raise FileNotFoundError(f"{path}: pyiqa's calibration photo {rel} is missing; "
                                    "reinstall pyiqa (>= 0.1.16 ships it)")
        return img[..., ::-1]

    return load


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    """A photo of matplotlib's sample data (``mpl-data/sample_data``)."""
    def load() -> np.ndarray:
        from PIL import Image

        cbook = extras.require("matplotlib.cbook")
        with cbook.get_sample_data(name) as fh, Image.open(fh) as img:
            return np.asarray(img.convert("RGB"))

    return load


def _halved(load: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """Area-downscale by 2: the photo ships as a JPEG, and halving it averages its own
    compression artifacts away, so that degradation labels describe the pixels."""
    def halved() -> np.ndarray:
        import cv2

        img = np.asarray(load())
        return cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2),
                          interpolation=cv2.INTER_AREA)

    return halved


#: Bundled photos by name. Colour PNGs first (clean), then colour photos that ship as JPEGs
#: (halved, see :func:`_halved`), then grayscale PNGs (replicated to RGB on load), then the
#: five clean Kodak photos that pyiqa ships for its calibration; last, two photos of other
#: packages that the embedded default keeps for the transfer evaluation only.
EMBEDDED: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "motorcycle_left": _skimage("stereo_motorcycle", 0),
    "motorcycle_right": _skimage("stereo_motorcycle", 1),
    "rocket": _halved(_skimage("rocket")),
    "hubble_deep_field": _halved(_skimage("hubble_deep_field")),
    "retina": _halved(_skimage("retina")),
    "china": _halved(_sklearn("china.jpg")),
    "flower": _halved(_sklearn("flower.jpg")),
    "camera": _skimage("camera"),
    "brick": _skimage("brick"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "moon": _skimage("moon"),
    "coins": _skimage("coins"),
    **{f"kodim{n}": _pyiqa(f"I{n}") for n in ("03", "04", "06", "08", "19")},
    # Photos that no HD-CLIP of the embedded default trains on (the transfer set's unseen
    # content): a scanned portrait (matplotlib's JPEG, halved) and a grayscale microscopy photo.
    "grace_hopper": _halved(_matplotlib("grace_hopper.jpg")),
    "cell": _skimage("cell"),
}


def embedded_image(name: str) -> np.ndarray:
    """One bundled photo as RGB uint8 (grayscale replicated to three channels)."""
    try:
        loader = EMBEDDED[name]
    except KeyError:
        raise ValueError(f"unknown bundled photo {name!r}; known: {', '.join(EMBEDDED)}") from None
    img = np.asarray(loader())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.dtype != np.uint8:
        img = zio.to_uint8(img.astype(np.float64) / (255.0 if img.max() > 1 else 1.0))
    return np.ascontiguousarray(img[..., :3])


def write_embedded(out: str | Path, names: Iterable[str]) -> list[Path]:
    """Write the named bundled photos as ``out/<name>.png`` (atomically) and their
    ``out/index.csv``; return the image paths."""
    out = Path(out)
    paths = []
    for name in names:
        path = out / f"{name}.png"
        zio.write_png(path, embedded_image(name))
        paths.append(path)
    write_index(out / "index.csv", paths)
    return paths


def count_images(folder: Path) -> int:
    """Image files under ``folder`` (recursively, by suffix)."""
    return sum(1 for p in folder.rglob("*")
               if p.is_file() and p.suffix.lower() in zio.IMAGE_SUFFIXES)


#: How to make a captions file (``datasets.<name>.captions``), for messages and `data check`.
CAPTIONS_HOWTO = (
    "make it in DA-CLIP's layout: one row per image, tab-separated, the header "
    "'filepath<TAB>title', filepath the image file (matched by file name), title its caption; "
    "DA-CLIP's scripts/generate_captions.py captions each image with clip-interrogator "
    "(Config(clip_model_name='ViT-L-14/openai'), generate_caption) and writes such a file "
    "with pandas' to_csv(sep='\\t', index=False); without the key the CLIP loss falls back to "
    "the clean crops (docs/method.md)")


def read_captions(path: str | Path) -> dict[str, str]:
    """Captions by image name from a DA-CLIP-style CSV (tab-separated, columns ``filepath``
    and ``title``, as DA-CLIP's ``scripts/generate_captions.py`` writes it and its
    ``CsvDataset`` reads it with ``sep='\\t'``; a comma-separated file with the same columns
    is read too). Keys are the file names and stems of ``filepath``. A missing file is an
    error that names it and says how to make one (:data:`CAPTIONS_HOWTO`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such captions file (datasets.<name>.captions); "
                                f"{CAPTIONS_HOWTO}")
    text = path.read_text()
    lines = text.splitlines()
    dialect = "excel-tab" if lines and "\t" in lines[0] else "excel"
    rows = list(csv.DictReader(lines, dialect=dialect))
    if not rows or not {"filepath", "title"} <= set(rows[0]):
        raise ValueError(f"{path}: a captions file needs the columns 'filepath' and 'title' "
                         "(DA-CLIP's layout)")
    out = {}
    for r in rows:
        name = Path(r["filepath"]).name
        out[name] = out[Path(name).stem] = r["title"]
    return out


def _captions_row(name: str, path: str, images: list[str], root: Path) -> dict:
    """`check`'s row of a dataset's captions file: found when every image has a caption."""
    row = {"dataset": f"{name} captions", "kind": "captions", "path": path, "files": 0,
           "expected": len(images) or "", "url": "", "hint": ""}
    try:
        caps = read_captions(root / path)
    except (FileNotFoundError, ValueError) as exc:
        missing = isinstance(exc, FileNotFoundError)
        return {**row, "status": "missing" if missing else "invalid",
                "hint": CAPTIONS_HOWTO if missing else str(exc)}
    have = [i for i in images if Path(i).name in caps or Path(i).stem in caps]
    row["files"] = len(have) if images else len(caps) // 2
    if images and len(have) < len(images):
        lacking = sorted(set(images) - set(have))
        return {**row, "status": "incomplete",
                "hint": f"no caption for {len(lacking)} image(s), e.g. {', '.join(lacking[:3])}"}
    return {**row, "status": "found"}


def check(config: dict, root: str | Path = ".") -> list[dict]:
    """Per dataset of ``config``: kind, path, status (found / incomplete / missing), counts;
    and for a dataset with ``captions`` a row for that file (found / incomplete / missing /
    invalid; ``hint`` says how to make it or what is wrong)."""
    rows, captions = [], []
    for name, ds in config["datasets"].items():
        if ds.get("captions"):
            folder = Path(root) / ds.get("path", "")
            images = (list(ds["images"]) if ds["kind"] == "embedded" else
                      [p.name for p in folder.rglob("*") if p.suffix.lower()
                       in zio.IMAGE_SUFFIXES] if folder.is_dir() else [])
            captions.append(_captions_row(name, ds["captions"], images, Path(root)))
        if ds["kind"] == "embedded":
            missing = [n for n in ds["images"] if n not in EMBEDDED]
            rows.append({"dataset": name, "kind": "embedded", "path": "(bundled)",
                         "status": "missing" if missing else "found",
                         "files": len(ds["images"]) - len(missing),
                         "expected": len(ds["images"]), "url": ""})
            continue
        folder = Path(root) / ds["path"]
        count = count_images(folder) if folder.is_dir() else 0
        expected = ds.get("expected")
        if count == 0:
            status = "missing"
        elif expected and count < expected:
            status = "incomplete"
        else:
            status = "found"
        rows.append({"dataset": name, "kind": "folder", "path": ds["path"], "status": status,
                     "files": count, "expected": expected or "", "url": ds.get("url", "")})
    return rows + captions


# --------------------------------------------------------------------------- dataset index

INDEX_COLUMNS = ("path", "bytes", "sha1")


def write_index(out: str | Path, files: Iterable[Path]) -> int:
    """Write ``out`` (CSV): one row per image, path relative to the index's folder, size, sha1.

    The index is what downstream rules read, so that a dataset is pinned by content.
    """
    out = Path(out)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    n = 0
    for f in sorted(map(Path, files)):
        data = f.read_bytes()
        rel = os.path.relpath(f.resolve(), out.parent.resolve())
        writer.writerow([Path(rel).as_posix(), len(data), hashlib.sha1(data).hexdigest()])
        n += 1
    zio.write_text(out, buf.getvalue())
    return n


def index_folder(folder: str | Path, out: str | Path, url: str = "") -> int:
    """Index the images of a dataset folder; a clear error names the folder when it is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        hint = (f" Get the dataset from {url} and place it there (README, 'Datasets')."
                if url else "")
        raise FileNotFoundError(f"dataset folder {folder} does not exist.{hint}")
    files = [p for p in folder.rglob("*")
             if p.is_file() and p.suffix.lower() in zio.IMAGE_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"dataset folder {folder} holds no image files")
    return write_index(out, files)


def image_list(source: str | Path) -> list[Path]:
    """The images named by ``source``: a folder (its images) or an index CSV (its rows)."""
    source = Path(source)
    if source.is_dir():
        return zio.list_images(source)
    if source.suffix.lower() == ".csv" and source.is_file():
        with source.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise ValueError(f"{source}: an image index needs a 'path' column")
            files = [source.parent / row["path"] for row in reader]
        if not files:
            raise ValueError(f"{source}: the image index lists no image")
        return files
    raise FileNotFoundError(f"{source}: neither a folder of images nor an index CSV")


def by_stem(files) -> dict[str, Path]:
    """``files`` by name stem, in their order; two files with one stem (``a.png``, ``a.jpg``)
    are a ValueError naming both, since every output of zephir is named by its source's stem."""
    stems: dict[str, Path] = {}
    for f in map(Path, files):
        if f.stem in stems:
            raise ValueError(f"{f} and {stems[f.stem]} share the name {f.stem!r}; output names "
                             "are derived from it, rename one")
        stems[f.stem] = f
    return stems


def lq_inputs(source: str | Path) -> dict[str, Path]:
    """``{stem: LQ path}`` of a set's LQ images, sorted by stem: the ``lq`` column of a blind
    manifest (``zephir blind``; relative to the manifest's folder), or the images of a folder or
    index CSV as they are (``hq: false`` sets such as RealDeg). Two files with one stem are a
    ValueError (outputs are named by it). Reads the manifest's ``lq`` column only, so that the
    restore jobs in the backbones' environments need none of zephir.degrade."""
    source = Path(source)
    header: list[str] = []
    if source.is_file() and source.suffix.lower() == ".csv":
        with source.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    if "lq" not in header:
        return dict(sorted(by_stem(image_list(source)).items()))
    with source.open(newline="", encoding="utf-8") as fh:
        files = [source.parent / row["lq"] for row in csv.DictReader(fh)]
    if not files:
        raise ValueError(f"{source}: the blind manifest lists no image")
    return dict(sorted(by_stem(files).items()))
