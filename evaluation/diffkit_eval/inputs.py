"""Images from anywhere, as uint8 (N, C, H, W): diffkit's samples, another toolkit's arrays or a folder of images.

Samples from diffusers, denoising-diffusion-pytorch or a notebook are scored exactly like diffkit's own, so
the reader takes what they write: a folder of PNG/JPEG files, or an `.npy`/`.npz` array of uint8 pixels or
floats in a declared range, shaped N×H×W, N×1×H×W or N×H×W×1 (or ×3). Anything it cannot read unambiguously
is one line saying what to fix.
"""

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from diffkit.errors import DiffkitError
from diffkit.samples import checked_labels

RANGES = {"0,1": (0.0, 1.0), "0,255": (0.0, 255.0), "-1,1": (-1.0, 1.0)}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_IMAGES = 1_000_000


def parse_range(text):
    if text is None:
        return None
    key = str(text).replace(" ", "")
    if key not in RANGES:
        raise DiffkitError(f"--range must be one of {', '.join(RANGES)} (got {text!r})")
    return key


def to_pixels(array, source, value_range=None):
    """uint8 (N, C, H, W) from an integer or float array of shape N×H×W, N×C×H×W or N×H×W×C (C = 1 or 3)."""
    shape = array.shape
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1] not in (1, 3) or len(array) == 0:
        raise DiffkitError(f"{source}: images must be N×H×W, N×1×H×W or N×H×W×1 (or 3 channels) with N ≥ 1; "
                           f"got shape {shape}")
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DiffkitError(f"{source}: images must be integers 0..255 or floats, got {array.dtype}")
    if array.shape[1] == 3 and (array == array[:, :1]).all():
        array = array[:, :1]  # grey images stored as three equal channels, as many image writers do
    if np.issubdtype(array.dtype, np.floating):
        return _from_floats(array, source, value_range)
    low, high = int(array.min()), int(array.max())
    if value_range not in (None, "0,255") or low < 0 or high > 255:
        raise DiffkitError(f"{source}: integer images must be pixels in 0..255 (got {array.dtype} in [{low}, {high}]"
                           + (f", declared --range {value_range}" if value_range else "") + ")")
    return torch.from_numpy(np.array(array, dtype=np.uint8))  # a copy: the source may be a read-only map


def _from_floats(array, source, value_range):
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise DiffkitError(f"{source}: the images hold NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if value_range is None:
        if low < 0 and low >= -1 - 1e-3 and high <= 1 + 1e-3:
            value_range = "-1,1"
        elif high > 1 and low >= 0 and high <= 255 + 1e-3:
            value_range = "0,255"
        else:
            raise DiffkitError(f"{source}: float images in [{low:.3g}, {high:.3g}] could be in more than one range; "
                               f"say which with --range 0,1, 0,255 or -1,1 (Python: value_range=\"0,1\")")
    lo, hi = RANGES[value_range]
    slack = 1e-3 * (hi - lo)
    if low < lo - slack or high > hi + slack:
        raise DiffkitError(f"{source}: float images in [{low:.3g}, {high:.3g}] are outside the declared range "
                           f"{value_range}")
    pixels = np.clip(np.round((array - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(pixels))


def read_folder(folder, count=None):
    """uint8 (N, C, H, W) from the PNG/JPEG files of a folder, in name order: grey scale, or RGB whose three
    channels are equal (as torchvision's save_image writes grey images) read as grey."""
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DiffkitError(f"{folder} holds no .png, .jpg or .jpeg images")
    if len(files) > MAX_IMAGES:
        raise DiffkitError(f"{folder} holds {len(files):,} images; diffkit scores at most {MAX_IMAGES:,}")
    images = []
    for path in files[:count]:
        try:
            with Image.open(path) as image:
                image.load()
                array = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DiffkitError(f"cannot read {path} as an image: {exc}".splitlines()[0]) from None
        if array.ndim == 3 and (array == array[..., :1]).all():
            array = array[..., 0]
        images.append(array)
    sizes = {a.shape for a in images}
    if len(sizes) > 1:
        raise DiffkitError(f"{folder}: the images differ in size or colour ({', '.join(sorted(map(str, sizes)))}); "
                           f"give one size")
    stacked = np.stack(images)
    return to_pixels(stacked[:, None] if stacked.ndim == 3 else stacked, folder)


def read_array(path, count=None, value_range=None):
    """(uint8 (N, C, H, W), meta, labels or None) from an .npy, or an .npz holding `images` (diffkit's samples,
    with their meta and, from a conditional run, the class each image was asked to be) or a single array.

    Only the first `count` images are read (an .npy is memory-mapped, an .npz member read as a stream), and a
    header that claims more data than the file holds is refused before anything is allocated."""
    path = Path(path)
    meta, labels = {}, None
    try:
        if _is_npy(path):
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            with zipfile.ZipFile(path) as archive:
                names = [n.removesuffix(".npy") for n in archive.namelist() if n.endswith(".npy")]
                name = "images" if "images" in names else (names[0] if len(names) == 1 else None)
                if name is None:
                    raise DiffkitError(f"{path} has no 'images' array and more than one array "
                                       f"({', '.join(names[:5]) or 'none'}); save the images as 'images'")
                array = _member(archive, f"{name}.npy", path, count)
                if "meta" in names:
                    meta = _meta(path, _member(archive, "meta.npy", path, None))
                if name == "images" and "labels" in names:
                    labels = checked_labels(_member(archive, "labels.npy", path, len(array)), len(array), path)
    except DiffkitError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DiffkitError(f"cannot read {path} as a .npy or .npz array: {exc}".splitlines()[0]) from None
    if len(array) > MAX_IMAGES and count is None:
        raise DiffkitError(f"{path} holds {len(array):,} images; score at most {MAX_IMAGES:,} (-n)")
    return to_pixels(np.asarray(array[:count]), path, value_range), meta, labels


def _member(archive, member, path, count):
    """The array in an .npz member, its first `count` rows only, after checking that the member holds as many
    bytes as its header claims (an .npz 'bomb' asks for gigabytes in a few megabytes)."""
    info = archive.getinfo(member)
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject:
            raise DiffkitError(f"{path}: '{member}' holds Python objects, which diffkit never unpickles")
        rows = shape[0] if shape else 1
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
        if rows * row_bytes > info.file_size:
            raise DiffkitError(f"{path}: '{member}' claims {rows:,} × {shape[1:]} {dtype} ({rows * row_bytes:,} bytes), "
                               f"more than the {info.file_size:,} the file holds")
        if fortran and len(shape) > 1:
            raise DiffkitError(f"{path}: '{member}' is in Fortran order; save it with np.ascontiguousarray")
        take = rows if count is None else min(rows, count)
        data = f.read(take * row_bytes)
    if len(data) < take * row_bytes:
        raise DiffkitError(f"{path}: '{member}' is truncated")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape((take, *shape[1:])) if shape else array.reshape(())


def _is_npy(path):
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"  # by content: a plain .npy saved under an .npz name is read as what it is


def _meta(path, raw):
    try:
        meta = json.loads(str(raw))
        if not isinstance(meta, dict):
            raise ValueError
    except ValueError:
        raise DiffkitError(f"{path}: its 'meta' array is not the JSON diffkit writes; drop it or fix it") from None
    return meta


def read_images(source, count=None, value_range=None):
    """(uint8 (N, C, H, W), meta, labels or None) from a folder of images or an .npy/.npz file (`read_array`);
    the first `count` when given."""
    source = Path(source)
    value_range = parse_range(value_range)
    if source.is_dir():
        return read_folder(source, count), {}, None
    if not source.is_file():
        raise DiffkitError(f"{source} is neither a folder of images nor an .npy/.npz file")
    return read_array(source, count, value_range)
