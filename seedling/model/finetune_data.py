"""The user's training set for fine-tuning: captioned images or edit pairs, read from files, a
folder or a zip, validated with messages a person can act on, and cropped to the model's grid.

Layouts understood (in a folder, a zip, or a set of uploaded files):
    cat.png + cat.txt                        a captioned image (the .txt sidecar is the caption)
    x_before.png + x_after.png + x.txt       an edit pair (the .txt is the instruction)
    before/x.png + after/x.png + x.txt       the same pair, in folders

Torch-free (PIL + numpy) so the app can validate an upload before anything is queued.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps

from seedling.pictures import PictureError, open_picture

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MIN_SIDE = 64  # below half the 128 px grid a picture is mostly upsampling blur: refuse, don't train on it
MAX_EXAMPLES = 500
MAX_ZIP_BYTES = 1 << 30  # uncompressed; a zip bomb stops here, not in memory
MAX_MESSAGES = 8  # problems listed in one error; the rest are counted


class DatasetError(ValueError):
    """The training set cannot be used; `problems` lists every reason found (one line each)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        shown = self.problems[:MAX_MESSAGES]
        more = len(self.problems) - len(shown)
        super().__init__("; ".join(shown) + (f"; and {more} more problems" if more > 0 else ""))


@dataclass(frozen=True)
class CaptionedImage:
    name: str  # where it came from (file name), for messages
    image: Image.Image
    caption: str


@dataclass(frozen=True)
class EditPair:
    name: str
    before: Image.Image
    after: Image.Image
    instruction: str


Example = CaptionedImage | EditPair


# -- images ------------------------------------------------------------------------------------
# Training pictures are resized to the model's grid; keeping more than this costs memory only.
TRAIN_MAX_SHORT_SIDE = 1024


def open_image(source: bytes | str | Path, name: str) -> Image.Image:
    """A loaded picture through the app's one gate (size and pixel limits checked before
    decoding; shrunk to TRAIN_MAX_SHORT_SIDE), or DatasetError naming the file."""
    try:
        return open_picture(source, name, mode=None, max_short_side=TRAIN_MAX_SHORT_SIDE)
    except PictureError as err:
        raise DatasetError([str(err)]) from None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency composited on white (icons and cut-outs are drawn on white)."""
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def prepare_image(image: Image.Image, size: int = 128) -> Image.Image:
    """Resize the shorter side to `size` and centre-crop to size x size (RGB)."""
    image = to_rgb(image)
    return ImageOps.fit(image, (size, size), method=Image.LANCZOS, centering=(0.5, 0.5))


# -- reading layouts ---------------------------------------------------------------------------
def _hidden(path: PurePosixPath) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in path.parts)


def _pair_role(path: PurePosixPath) -> tuple[str | None, str]:
    """("before" | "after" | None, key shared by the pair's files and its instruction)."""
    stem = path.stem
    for role in ("before", "after"):
        if stem.lower().endswith("_" + role):
            return role, str(path.parent / stem[: -len(role) - 1])
        if path.parent.name.lower() == role:
            return role, str(path.parent.parent / stem)
    return None, str(path.parent / stem)


def examples_from_entries(
    entries: Mapping[str, bytes], captions: Mapping[str, str] | None = None
) -> list[Example]:
    """Examples from named file contents (relative posix names -> bytes), in name order.

    `captions` (name -> text) overrides sidecars. A missing caption is kept as "" so a UI can ask
    for it; `validate_examples` reports it. Raises DatasetError for unreadable files or unmatched pairs.
    """
    texts: dict[str, str] = {}
    images: dict[str, tuple[str | None, str]] = {}  # name -> (role, key)
    problems: list[str] = []
    for name in sorted(entries):
        path = PurePosixPath(name)
        if _hidden(path):
            continue
        ext = path.suffix.lower()
        if ext == ".txt":
            try:
                texts[_pair_role(path)[1]] = entries[name].decode("utf-8-sig").strip()
            except UnicodeDecodeError:
                problems.append(f"{name}: captions must be UTF-8 text")
        elif ext in IMAGE_EXTS:
            images[name] = _pair_role(path)
        else:
            problems.append(f"{name}: not an image or a .txt caption (images: {', '.join(IMAGE_EXTS)})")
    captions = captions or {}

    def load(name: str) -> Image.Image | None:
        try:
            return open_image(entries[name], name)
        except DatasetError as err:
            problems.extend(err.problems)
            return None

    paired = {name: rk for name, rk in images.items() if rk[0] is not None}
    examples: list[Example] = []
    if paired:
        by_key: dict[str, dict[str, str]] = {}
        for name, (role, key) in paired.items():
            by_key.setdefault(key, {})[role] = name  # type: ignore[index]
        for name in images.keys() - paired.keys():
            problems.append(f"{name}: edit pairs are named x_before/x_after; this file is neither")
        for key in sorted(by_key):
            names = by_key[key]
            if set(names) != {"before", "after"}:
                role, fname = next(iter(names.items()))
                missing = "after" if role == "before" else "before"
                problems.append(f"{fname}: no matching '{missing}' image for this edit pair")
                continue
            before, after = load(names["before"]), load(names["after"])
            if before is not None and after is not None:
                instruction = captions.get(names["before"], texts.get(key, ""))
                examples.append(EditPair(names["before"], before, after, instruction))
    else:
        for name, (_, key) in images.items():
            image = load(name)
            if image is not None:
                examples.append(CaptionedImage(name, image, captions.get(name, texts.get(key, ""))))
    if problems:
        raise DatasetError(problems)
    return examples


def _zip_entries(source: bytes | str | Path, name: str) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
                raise DatasetError([f"{name}: more than {MAX_ZIP_BYTES >> 20} MB uncompressed"])
            if len(infos) > 4 * MAX_EXAMPLES:
                raise DatasetError([f"{name}: {len(infos)} files; at most {4 * MAX_EXAMPLES}"])
            out, total = {}, 0
            for info in infos:  # count the bytes really inflated: a zip's declared sizes can lie
                chunks = []
                with zf.open(info) as f:
                    while chunk := f.read(1 << 20):
                        total += len(chunk)
                        if total > MAX_ZIP_BYTES:
                            raise DatasetError([f"{name}: more than {MAX_ZIP_BYTES >> 20} MB uncompressed"])
                        chunks.append(chunk)
                out[info.filename] = b"".join(chunks)
            return out
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as err:
        raise DatasetError([f"{name}: not a readable zip file ({err})"]) from None


def load_folder(folder: str | Path) -> list[Example]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError([f"{folder}: no such folder"])
    entries = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
    return examples_from_entries(entries)


def load_zip(source: bytes | str | Path, name: str = "upload.zip") -> list[Example]:
    return examples_from_entries(_zip_entries(source, name))


def load_files(paths: Iterable[str | Path], captions: Mapping[str, str] | None = None) -> list[Example]:
    """Uploaded files: images, .txt sidecars and zips (unpacked under their own name). Files are
    keyed by base name, so a caption sidecar matches its image wherever the upload put it."""
    entries: dict[str, bytes] = {}
    for p in paths:
        p = Path(p)
        if p.suffix.lower() == ".zip":
            for inner, data in _zip_entries(p, p.name).items():
                entries[f"{p.stem}/{inner}"] = data
        else:
            entries[p.name] = p.read_bytes()
    return examples_from_entries(entries, captions)


# -- validation --------------------------------------------------------------------------------
def validate_examples(examples: list[Example], size: int = 128, min_side: int = MIN_SIDE) -> None:
    """Raise DatasetError listing every problem: no examples, mixed kinds, missing captions or
    instructions, pictures too small to make a `size` x `size` training image."""
    if not examples:
        raise DatasetError(["no training images: upload images with captions, or edit pairs"])
    problems: list[str] = []
    kinds = {type(e) for e in examples}
    if len(kinds) > 1:
        problems.append("captioned images and edit pairs are mixed: train on one kind at a time")
    if len(examples) > MAX_EXAMPLES:
        problems.append(f"{len(examples)} examples; at most {MAX_EXAMPLES}")
    need = max(min_side, 1)
    for ex in examples:
        text = ex.caption if isinstance(ex, CaptionedImage) else ex.instruction
        if not text.strip():
            what = "caption" if isinstance(ex, CaptionedImage) else "instruction"
            stem = PurePosixPath(ex.name).stem
            problems.append(f"{ex.name}: no {what} (type one, or add {stem}.txt beside it)")
        pictures = [ex.image] if isinstance(ex, CaptionedImage) else [ex.before, ex.after]
        for im in pictures:
            if min(im.size) < need:
                problems.append(
                    f"{ex.name}: {im.width}x{im.height} pixels is too small; each side needs at least "
                    f"{need} px (pictures are resized and centre-cropped to {size}x{size})"
                )
                break
    if problems:
        raise DatasetError(problems)
