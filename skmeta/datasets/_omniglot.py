"""The Omniglot data set (Lake et al., 2015) and class augmentation by rotation."""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import numbers
import os
import stat
import uuid
import zipfile
from collections.abc import Sequence
from urllib.error import URLError
from urllib.request import urlopen

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils import Bunch

from ._base import DATA_HOME_ENV, get_data_home

__all__ = ["fetch_omniglot", "rotate_classes"]

logger = logging.getLogger(__name__)

_SUBSETS = ("background", "evaluation", "background_small1", "background_small2")

_URL_PREFIX = "https://github.com/brendenlake/omniglot/raw/master/python"

#: Where each subset's zip is downloaded from (tests monkeypatch this).
OMNIGLOT_URLS: dict[str, str] = {
    subset: f"{_URL_PREFIX}/images_{subset}.zip" for subset in _SUBSETS
}

#: ``(hash algorithm, hex digest)`` of each zip, checked after a download.
#: The sha256 of the small sets were computed from the official files; for the
#: full sets only md5 sums are published, by torchvision
#: (``Omniglot.zips_md5`` in ``torchvision/datasets/omniglot.py``).
OMNIGLOT_CHECKSUMS: dict[str, tuple[str, str]] = {
    "background": ("md5", "68d2efa1b9178cc56df9314c21c6e718"),
    "evaluation": ("md5", "6b91aef0f799c5bb55b94e3f2daec811"),
    "background_small1": (
        "sha256",
        "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
    ),
    "background_small2": (
        "sha256",
        "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
    ),
}

# Bump when the layout of the cached .npz files changes: old caches are then ignored.
_CACHE_VERSION = 1

_CHUNK_SIZE = 1 << 20

_DESCR = """\
Omniglot
========

Handwritten characters from 50 alphabets (Lake, Salakhutdinov and Tenenbaum,
2015): 1623 characters, each drawn once by 20 different people on Amazon
Mechanical Turk, as 105x105 black-and-white images. The "background" set holds
30 alphabets (964 characters, 19280 images) and the "evaluation" set the other
20 (659 characters, 13180 images); "background_small1" (5 alphabets, 136
characters, 2720 images) and "background_small2" (5 alphabets, 156 characters,
3120 images) are the authors' minimal background sets.

Few-shot learning (Vinyals et al., 2016; Finn et al., 2017) uses the images
resized to 28x28 and treats each character as a class; rotating each character
by multiples of 90 degrees makes new classes (see ``rotate_classes``).

Here the images are float32 with ink = 1 and background = 0, shape
(n_images, 1, image_size, image_size), resized with Lanczos anti-aliasing.

Source: https://github.com/brendenlake/omniglot (``python/images_<subset>.zip``),
MIT License, Copyright (c) 2015 Brenden Lake.

Reference: B. M. Lake, R. Salakhutdinov and J. B. Tenenbaum (2015). Human-level
concept learning through probabilistic program induction. Science, 350(6266),
1332-1338. https://doi.org/10.1126/science.aab3050
"""


def _check_params(subset: str, image_size: int) -> None:
    if not isinstance(subset, str) or subset not in _SUBSETS:
        raise ValueError(f"subset must be one of {_SUBSETS}, got {subset!r}.")
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, numbers.Integral)
        or image_size < 1
    ):
        raise ValueError(f"image_size must be an int >= 1, got {image_size!r}.")


def _import_pil():
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError(
            "fetch_omniglot needs Pillow to decode the PNG files: "
            "pip install 'skmeta[datasets]' (or pip install pillow)"
        ) from err
    return Image


def _missing_message(zip_path: str, subset: str, url: str) -> str:
    filename = os.path.basename(zip_path)
    return (
        f"Omniglot file {filename} not found: looked for {zip_path!r}. "
        f"Download it from {url} into {os.path.dirname(zip_path)!r}, call "
        f"fetch_omniglot(subset={subset!r}, download_if_missing=True) to download it, "
        f"or point skmeta at a folder that holds omniglot/{filename}, with "
        f"fetch_omniglot(data_home=...) or the {DATA_HOME_ENV} environment variable."
    )


#: Failures of a download itself (no network, DNS, HTTP errors, timeouts, a dropped
#: connection); a checksum mismatch is reported on its own.
_NETWORK_ERRORS = (URLError, TimeoutError, ConnectionError, http.client.HTTPException)


def _download_failed_message(zip_path: str, url: str, err: BaseException) -> str:
    filename = os.path.basename(zip_path)
    reason = getattr(err, "reason", None) or err
    return (
        f"Omniglot file {filename} is not in {os.path.dirname(zip_path)!r} and could not be "
        f"downloaded from {url} ({type(err).__name__}: {reason}). Without network access, "
        f"download {url} on another machine and copy the zip, as it is (not extracted), to "
        f"{zip_path!r}; or point skmeta at a folder that holds omniglot/{filename}, with "
        f"fetch_omniglot(data_home=...) or the {DATA_HOME_ENV} environment variable."
    )


def _download(url: str, path: str, checksum: tuple[str, str]) -> None:
    """Download ``url`` to ``path``, verifying ``checksum``, atomically."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    algorithm, expected = checksum
    hasher = hashlib.new(algorithm)
    # A temporary file in the destination folder, so that os.replace is atomic
    # and an interrupted download never leaves a partial file under the final name.
    tmp_path = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.part")
    logger.info("Downloading %s to %s", url, path)
    try:
        with open(tmp_path, "xb") as out, urlopen(url, timeout=60) as response:
            while chunk := response.read(_CHUNK_SIZE):
                hasher.update(chunk)
                out.write(chunk)
        digest = hasher.hexdigest()
        if digest != expected:
            raise OSError(
                f"Checksum mismatch for {url}: expected {algorithm} {expected}, got "
                f"{digest}. The downloaded file was deleted; try again, or download "
                f"the file by hand to {path!r}."
            )
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _decode_zip(zip_path: str, subset: str, image_size: int) -> dict[str, np.ndarray]:
    """Decode the PNG files of an Omniglot zip into arrays (ink = 255 in ``ink``)."""
    Image = _import_pil()
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        raise OSError(
            f"{zip_path!r} is not a valid zip file; delete it and fetch it again."
        ) from err
    with archive:
        members = []
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) != 4 or not parts[3].lower().endswith(".png"):
                continue  # folders, and anything that is not a character image
            _, alphabet, character, filename = parts
            members.append((alphabet, character, filename, name))
        if not members:
            raise OSError(
                f"{zip_path!r} holds no images laid out as "
                f"images_{subset}/<alphabet>/<character>/<id>_<drawer>.png."
            )
        members.sort()

        n = len(members)
        ink = np.empty((n, 1, image_size, image_size), dtype=np.uint8)
        drawer = np.empty(n, dtype=np.int64)
        target = np.empty(n, dtype=np.int64)
        labels: dict[tuple[str, str], int] = {}
        for i, (alphabet, character, filename, name) in enumerate(members):
            target[i] = labels.setdefault((alphabet, character), len(labels))
            stem = os.path.splitext(filename)[0]
            try:
                drawer[i] = int(stem.rsplit("_", 1)[-1])
            except ValueError as err:
                raise OSError(
                    f"Unexpected file name {name!r} in {zip_path!r}: expected <id>_<drawer>.png."
                ) from err
            with Image.open(io.BytesIO(archive.read(name))) as image:
                # mode "1" (1 bit) -> "L" first, so that the resize anti-aliases.
                image = image.convert("L")
                if image.size != (image_size, image_size):
                    image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
                ink[i, 0] = 255 - np.asarray(image, dtype=np.uint8)

    return {
        "ink": ink,
        "target": target,
        "alphabet": np.array([m[0] for m in members]),
        "drawer": drawer,
        "target_names": np.array([f"{a}/{c}" for a, c in labels]),
    }


def _write_cache(cache_path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``cache_path`` through a temporary file and os.replace."""
    folder = os.path.dirname(cache_path)
    tmp_path = os.path.join(folder, f".{os.path.basename(cache_path)}.{uuid.uuid4().hex}.part")
    try:
        with open(tmp_path, "xb") as out:
            np.savez_compressed(out, **arrays)
        os.replace(tmp_path, cache_path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _is_writable(folder: str) -> bool:
    """Whether the cache may be written to ``folder`` (tests patch this).

    A folder without write permission bits counts as read-only even for root,
    for whom ``os.access`` always says yes: a shared data folder stays untouched.
    """
    return os.access(folder, os.W_OK) and bool(os.stat(folder).st_mode & stat.S_IWUSR)


def _read_cache(cache_path: str) -> dict[str, np.ndarray]:
    with np.load(cache_path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def fetch_omniglot(
    *,
    subset: str = "background",
    data_home: str | os.PathLike[str] | None = None,
    download_if_missing: bool = True,
    image_size: int = 28,
    return_X_y: bool = False,
) -> Bunch | tuple[np.ndarray, np.ndarray]:
    """Load the Omniglot handwritten characters (Lake et al., 2015).

    =================   ==========  ==========  =====================
    subset              alphabets   characters  images (20 per char.)
    =================   ==========  ==========  =====================
    background          30          964         19280
    evaluation          20          659         13180
    background_small1   5           136         2720
    background_small2   5           156         3120
    =================   ==========  ==========  =====================

    The data are the official zips ``images_<subset>.zip`` of
    https://github.com/brendenlake/omniglot (folder ``python/``), read from
    ``<data_home>/omniglot/images_<subset>.zip`` without extracting them.
    The decoded arrays are cached in ``<data_home>/omniglot/`` when that
    folder is writable.

    Parameters
    ----------
    subset : {"background", "evaluation", "background_small1", \
"background_small2"}, default="background"
        Which image set to load. The usual few-shot protocol meta-trains on
        "background" and meta-tests on "evaluation" (disjoint alphabets).

    data_home : str or path-like, default=None
        The folder that holds ``omniglot/``. By default the ``SKMETA_DATA``
        environment variable, else ``~/skmeta_data`` (see
        :func:`~skmeta.datasets.get_data_home`). It may be read-only when the
        zip (or the cache) is already there.

    download_if_missing : bool, default=True
        If the zip is not in ``<data_home>/omniglot/``, download it from
        GitHub (and check its checksum); if False, raise an ``OSError``.

    image_size : int, default=28
        Side of the returned square images, in pixels. The 105x105 originals
        are resized with Pillow's Lanczos filter (anti-aliased); 105 keeps
        them as they are.

    return_X_y : bool, default=False
        If True, return ``(images, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the attributes:

        images : ndarray of shape (n_images, 1, image_size, image_size), float32
            The images, with ink = 1 and background = 0 (``1 - pixel / 255``),
            values in [0, 1].
        target : ndarray of shape (n_images,), int64
            The character label, 0 to ``n_characters - 1``; the characters
            are numbered in sorted (alphabet, character folder) order.
        alphabet : ndarray of shape (n_images,), str
            The alphabet of each image (for example to split by alphabet
            with :class:`~sklearn.model_selection.GroupKFold`).
        target_names : list of str
            ``"<Alphabet>/<characterNN>"`` of each label.
        drawer : ndarray of shape (n_images,), int64
            Which of the 20 drawers (1 to 20) drew the image, from the file
            name ``<id>_<drawer>.png``.
        DESCR : str
            Description of the data set.

    (images, target) : tuple of ndarray
        When ``return_X_y`` is True.

    Raises
    ------
    ValueError
        If ``subset`` or ``image_size`` is not valid.
    OSError
        If the zip is missing and ``download_if_missing`` is False
        (:class:`FileNotFoundError`), or it cannot be downloaded (no network:
        the message says where to put the file by hand), or a download fails
        its checksum.
    ImportError
        If Pillow, needed to decode the images, is not installed.

    Notes
    -----
    The images are in a deterministic order: sorted by alphabet, character
    folder and file name. Each character has 20 images, one per drawer.

    The cache is a compressed ``.npz`` file,
    ``<data_home>/omniglot/images_<subset>_<image_size>px_v1.npz``, read
    instead of the zip when present (so the zip may then be absent). If the
    folder is not writable (a read-only shared data folder, for example),
    nothing is cached and the zip is decoded at each call (a few seconds for
    the full "background" set). Downloads and cache files are written to a
    temporary file first and renamed into place, so an interrupted call never
    leaves a partial file under the final name.

    The checksum of the downloaded "background_small1" and
    "background_small2" zips is a sha256; for "background" and "evaluation"
    only md5 sums are published (those used by torchvision), and they are
    checked with md5.

    Pillow is an optional dependency: ``pip install 'skmeta[datasets]'``.

    References
    ----------
    .. [1] B. M. Lake, R. Salakhutdinov and J. B. Tenenbaum, "Human-level
       concept learning through probabilistic program induction", Science,
       350(6266), 1332-1338, 2015.
    .. [2] O. Vinyals, C. Blundell, T. Lillicrap, K. Kavukcuoglu and
       D. Wierstra, "Matching Networks for One Shot Learning", NeurIPS 2016.
    .. [3] C. Finn, P. Abbeel and S. Levine, "Model-Agnostic Meta-Learning for
       Fast Adaptation of Deep Networks", ICML 2017.

    Examples
    --------
    >>> from skmeta.datasets import fetch_omniglot
    >>> omniglot = fetch_omniglot(subset="background_small1")  # doctest: +SKIP
    >>> omniglot.images.shape  # doctest: +SKIP
    (2720, 1, 28, 28)
    >>> omniglot.target_names[0], omniglot.alphabet[0]  # doctest: +SKIP
    ('Balinese/character01', 'Balinese')
    >>> X, y = fetch_omniglot(subset="background_small1",
    ...                       return_X_y=True)  # doctest: +SKIP
    """
    _check_params(subset, image_size)
    image_size = int(image_size)
    folder = os.path.join(get_data_home(data_home), "omniglot")
    zip_path = os.path.join(folder, f"images_{subset}.zip")
    cache_path = os.path.join(folder, f"images_{subset}_{image_size}px_v{_CACHE_VERSION}.npz")

    if os.path.exists(cache_path):
        arrays = _read_cache(cache_path)
    else:
        if not os.path.exists(zip_path):
            url = OMNIGLOT_URLS[subset]
            if not download_if_missing:
                raise FileNotFoundError(_missing_message(zip_path, subset, url))
            try:
                _download(url, zip_path, OMNIGLOT_CHECKSUMS[subset])
            except _NETWORK_ERRORS as err:
                raise OSError(_download_failed_message(zip_path, url, err)) from err
        arrays = _decode_zip(zip_path, subset, image_size)
        if _is_writable(folder):
            _write_cache(cache_path, arrays)
        else:
            logger.info("%s is not writable: not caching the decoded images", folder)

    images = (arrays["ink"] / np.float32(255)).astype(np.float32, copy=False)
    target = arrays["target"].astype(np.int64, copy=False)
    if return_X_y:
        return images, target
    return Bunch(
        images=images,
        target=target,
        alphabet=arrays["alphabet"].astype(str),
        target_names=[str(name) for name in arrays["target_names"]],
        drawer=arrays["drawer"].astype(np.int64, copy=False),
        DESCR=_DESCR,
    )


def rotate_classes(
    X: ArrayLike,
    y: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    angles: Sequence[int] = (0, 90, 180, 270),
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make new classes by rotating the images of each class.

    Class augmentation as in Santoro et al. (2016) and Finn et al. (2017) on
    Omniglot: every (class, angle) pair becomes a class of its own, so the
    number of classes is multiplied by ``len(angles)``.

    Parameters
    ----------
    X : array-like of shape (n_samples, ..., height, width)
        The images; the rotation acts on the last two axes (for example
        ``(n_samples, 1, 28, 28)`` as returned by :func:`fetch_omniglot`).
        Rotations by 90 or 270 degrees need square images.

    y : array-like of shape (n_samples,)
        The class labels (any sortable labels).

    groups : array-like of shape (n_samples,), default=None
        Per-sample groups (for example ``fetch_omniglot().alphabet``), copied
        to the rotated samples.

    angles : sequence of int, default=(0, 90, 180, 270)
        Rotation angles in degrees, counter-clockwise; multiples of 90, no two
        equal modulo 360. Include 0 to keep the original images.

    Returns
    -------
    X_rot : ndarray of shape (n_samples * len(angles), ..., height, width)
        The rotated images, one block per angle: ``X_rot[a * n_samples + i]``
        is ``X[i]`` rotated by ``angles[a]``.

    y_rot : ndarray of shape (n_samples * len(angles),), int64
        The new labels, ``y_index * len(angles) + a``, where ``y_index`` is the
        position of ``y`` in ``np.unique(y)`` and ``a`` the index of the angle
        in ``angles``. They run from 0 to ``n_classes * len(angles) - 1``.

    groups_rot : ndarray of shape (n_samples * len(angles),)
        The groups of the rotated samples; only returned when ``groups`` is
        given.

    Notes
    -----
    The rotation is :func:`numpy.rot90` on the last two axes, ``k = angle //
    90`` times: counter-clockwise when the image is displayed with row 0 at
    the top. The images are copied, not viewed.

    Rotate before splitting into meta-training and meta-test classes, or
    split by ``groups`` (alphabets), so that the rotations of one character
    do not end up on both sides of the split unless you want them to.

    References
    ----------
    .. [1] A. Santoro, S. Bartunov, M. Botvinick, D. Wierstra and
       T. Lillicrap, "Meta-Learning with Memory-Augmented Neural Networks",
       ICML 2016.
    .. [2] C. Finn, P. Abbeel and S. Levine, "Model-Agnostic Meta-Learning for
       Fast Adaptation of Deep Networks", ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.datasets import rotate_classes
    >>> X = np.arange(8).reshape(2, 1, 2, 2)
    >>> y = np.array([7, 3])
    >>> X_rot, y_rot = rotate_classes(X, y, angles=(0, 90))
    >>> X_rot.shape
    (4, 1, 2, 2)
    >>> y_rot  # np.unique(y) is [3, 7]: class 7 -> 2 (0 deg.), 3 (90 deg.)
    array([2, 0, 3, 1])
    >>> X[0, 0]
    array([[0, 1],
           [2, 3]])
    >>> X_rot[2, 0]  # X[0] turned by 90 degrees
    array([[1, 3],
           [0, 2]])
    >>> _, _, groups_rot = rotate_classes(X, y, groups=["a", "b"], angles=(0, 180))
    >>> groups_rot
    array(['a', 'b', 'a', 'b'], dtype='<U1')
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim < 3:
        raise ValueError(
            f"X must have shape (n_samples, ..., height, width) with at least 3 "
            f"dimensions, got shape {X.shape}."
        )
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(
            f"y must be 1-d with one label per sample of X; got y of shape {y.shape} "
            f"for X of shape {X.shape}."
        )
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise ValueError(
                f"groups must have one value per sample, shape {y.shape}; got {groups.shape}."
            )

    angles = tuple(angles)
    if not angles:
        raise ValueError("angles must hold at least one angle, e.g. (0, 90, 180, 270).")
    turns = []
    for angle in angles:
        if isinstance(angle, bool) or not isinstance(angle, numbers.Real) or angle % 90 != 0:
            raise ValueError(
                f"angles must be multiples of 90 degrees (e.g. (0, 90, 180, 270)), "
                f"got {angle!r} in angles={angles!r}."
            )
        turns.append(int(angle) // 90 % 4)
    if len(set(turns)) != len(turns):
        raise ValueError(
            f"angles must be different modulo 360 (each makes a new class), got {angles!r}."
        )
    if any(k % 2 for k in turns) and X.shape[-1] != X.shape[-2]:
        raise ValueError(
            f"Rotating by 90 or 270 degrees needs square images, got height x width "
            f"{X.shape[-2]} x {X.shape[-1]}."
        )

    _, y_index = np.unique(y, return_inverse=True)
    y_index = y_index.reshape(-1).astype(np.int64)
    n_angles = len(angles)
    X_rot = np.concatenate([np.rot90(X, k=k, axes=(-2, -1)) for k in turns])
    y_rot = np.concatenate([y_index * n_angles + a for a in range(n_angles)])
    if groups is None:
        return X_rot, y_rot
    return X_rot, y_rot, np.concatenate([groups] * n_angles)
