"""A user's own images listed in a CSV file: ``folder:csv=FILE``.

Columns (header names; the alternatives in brackets are accepted too, so SubpopBench's ``metadata_*.csv`` and
WaterBirds' ``metadata.csv`` read as they are):

- ``path`` [``filename``, ``img_filename``, ``file``, ``image``]: the image, relative to the CSV's folder;
- ``label`` [``y``, ``class``]: a class name or a class index;
- ``split``: ``train``, ``val`` (or ``valid``, ``validation``), ``test``, or 0 / 1 / 2;
- optional ``group``: a group name or index, taken as it is; or optional ``a`` [``attribute``, ``place``]: a
  spurious attribute, and then the group is (label, attribute), ``g = label * M + a`` for M attribute values
  (SubpopBench's rule; group_DRO's ``2*y + place`` on WaterBirds). Without either there are no groups.

Classes: the names in ``classes.txt`` beside the CSV (one per line, line order = index), or ``classes=a;b;c``
in the spec, or ``num_classes=K`` (indices 0..K-1); otherwise the labels found: integers 0..max, or names sorted
in Python string order (as ImageFolder sorts its folders). A label that is not a class (a name not listed, an
index outside 0..K-1, a negative index) is an error naming the line. Attribute names likewise from
``attributes.txt``, else the values found (integers 0..max, or names sorted). Group names are
``<class>/<attribute>``, or the ``group`` column's values.

Images: ``mode=RGB`` (default) or ``L``; ``size`` (default 224) and ``resize`` (default size*256/224): resize
square, center crop, as WaterBirds. Normalisation inside the model: ImageNet's mean/std (RGB), 0.449 / 0.226 (L).
"""

from __future__ import annotations

from pathlib import Path

from lfpcli.data.dataset import Dataset
from lfpcli.data.real.common import (
    SPLIT_CODES,
    make_split,
    read_csv,
    relative_file,
)
from lfpcli.data.real.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFiles,
    check_geometry,
    scan,
)
from lfpcli.errors import InputError
from lfpcli.hashing import sha256_file
from lfpcli.progress import Progress, no_progress

VERSION = 1
ALIASES = {
    "path": ("filename", "img_filename", "file", "image"),
    "label": ("y", "class"),
    "split": (),
    "group": (),
    "a": ("attribute", "place"),
}


def _names_file(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    names = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    if len(set(names)) != len(names):
        raise InputError(f"{path} names a class or attribute twice")
    return names or None


def _is_int(text: str) -> bool:
    t = text.strip()
    return t.lstrip("-").isdigit()


def _vocabulary(
    values: list[str], given: list[str] | None, csv: Path, lines: list[int], column: str, what: str
) -> tuple[list[str], list[int]]:
    """(names, index of each value): ``given`` names (values are names or indices into them), else integers
    0..max, else sorted names."""
    if given is not None:
        index = {n: i for i, n in enumerate(given)}
        out = []
        for v, line in zip(values, lines):
            t = v.strip()
            if t in index:
                out.append(index[t])
            elif _is_int(t) and 0 <= int(t) < len(given):
                out.append(int(t))
            else:
                shown = ", ".join(given[:10]) + (", ..." if len(given) > 10 else "")
                raise InputError(
                    f"{csv}: line {line}: {column} '{t}' is outside the {what} ({shown}; or an index "
                    f"0..{len(given) - 1})"
                )
        return list(given), out
    if values and all(_is_int(v) for v in values):
        ints = [int(v) for v in values]
        for v, line in zip(ints, lines):
            if v < 0:
                raise InputError(f"{csv}: line {line}: {column} '{v}' is outside the {what} (indices start at 0)")
        k = max(ints) + 1
        return [str(i) for i in range(k)], ints
    names = sorted({v.strip() for v in values})
    for v, line in zip(values, lines):
        if not v.strip():
            raise InputError(f"{csv}: line {line}: {column} is empty")
    index = {n: i for i, n in enumerate(names)}
    return names, [index[v.strip()] for v in values]


def build_folder(
    csv: str = "",
    mode: str = "RGB",
    size: int = 224,
    resize: int = 0,
    classes: str = "",
    num_classes: int = 0,
    *,
    progress: Progress = no_progress,
) -> Dataset:
    if not csv:
        raise InputError("folder needs csv=FILE: a CSV with columns path, label, split (and optional group or a)")
    if mode not in ("RGB", "L"):
        raise InputError(f"folder: mode must be RGB or L, got '{mode}'")
    r = check_geometry("folder", size, resize)
    path = Path(csv)
    rows, col = read_csv(path, ("path", "label", "split"), "folder CSV", ALIASES)
    if not rows:
        raise InputError(f"folder CSV {path} lists no image (only a header)")
    base = path.parent
    lines = [i + 2 for i in range(len(rows))]
    given = [c.strip() for c in classes.replace("|", ";").split(";") if c.strip()] if classes else None
    if given is None and num_classes:
        if num_classes < 2:
            raise InputError(f"folder: num_classes must be at least 2, got {num_classes}")
        given = [str(i) for i in range(num_classes)]
    if given is None:
        given = _names_file(base / "classes.txt")
    class_names, labels = _vocabulary([r[col["label"]] or "" for r in rows], given, path, lines, "label", "classes")
    if len(class_names) < 2:
        raise InputError(f"folder CSV {path} has a single class ({class_names[0]}); a classifier needs at least two")
    splits_of = []
    for r_, line in zip(rows, lines):
        s = (r_[col["split"]] or "").strip().lower()
        if s not in SPLIT_CODES:
            raise InputError(f"{path}: line {line}: split '{s}' is not train, val, test (or 0, 1, 2)")
        splits_of.append(SPLIT_CODES[s])
    group_names = None
    groups = None
    if "group" in col:
        group_names, groups = _vocabulary([r_[col["group"]] or "" for r_ in rows], None, path, lines, "group", "groups")
    elif "a" in col:
        attrs, a = _vocabulary(
            [r_[col["a"]] or "" for r_ in rows],
            _names_file(base / "attributes.txt"),
            path,
            lines,
            "attribute",
            "attributes",
        )
        m = len(attrs)
        groups = [y * m + v for y, v in zip(labels, a)]
        group_names = [f"{c}/{at}" for c in class_names for at in attrs]
    files = [str(relative_file(base, r_[col["path"]], path, line)) for r_, line in zip(rows, lines)]
    scan(files, "image", f"folder {path}", progress)
    splits = {}
    for name in ("train", "val", "test"):
        sel = [i for i, s in enumerate(splits_of) if s == name]
        if not sel:
            continue
        x = ImageFiles([files[i] for i in sel], mode, size, r, f"folder '{name}' images")
        splits[name] = make_split(x, [labels[i] for i in sel], [groups[i] for i in sel] if groups is not None else None)
    if "train" not in splits:
        raise InputError(f"folder CSV {path} lists no training image (split train or 0)")
    params = {"csv": str(path), "mode": mode, "size": size, "resize": r, "classes": classes, "num_classes": num_classes}
    c = 1 if mode == "L" else 3
    return Dataset(
        spec={
            "type": "real",
            "name": "folder",
            "version": VERSION,
            "params": params,
            "index": {"path": str(path), "sha256": sha256_file(path)},
        },
        splits=splits,
        num_classes=len(class_names),
        class_names=class_names,
        group_names=group_names,
        input_shape=(c, size, size),
        mean=list(IMAGENET_MEAN) if c == 3 else [0.449],
        std=list(IMAGENET_STD) if c == 3 else [0.226],
        description=f"images listed in {path}: {len(class_names)} classes"
        + (f", {len(group_names)} groups" if group_names else ""),
        details={
            "layout": "CSV: path, label, split [, group | a]",
            "csv": str(path),
            "columns": col,
            "classes_from": (
                "classes="
                if classes
                else "num_classes="
                if num_classes
                else "classes.txt"
                if (base / "classes.txt").is_file()
                else "the labels found (integers 0..max, or names sorted)"
            ),
            "groups": ("the group column" if "group" in col else "g = label * M + a" if "a" in col else None),
            "preprocessing": f"{mode}; resize to {r}x{r} (square, bilinear), center crop {size}x{size}; mean/std inside "
            f"the model; no augmentation",
        },
    )
