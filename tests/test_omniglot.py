"""Tests of skmeta.datasets: fetch_omniglot, rotate_classes and get_data_home.

The tests on the real data use the official "background_small1" zip, found through the
SKMETA_DATA environment variable (the folder that holds ``omniglot/``); they are skipped
when it is unset or the zip is absent. They never write into that folder.
"""

import hashlib
import importlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

try:
    from skmeta.datasets import fetch_omniglot, get_data_home, rotate_classes
except ImportError:  # skmeta.datasets.__init__ not written yet
    from skmeta.datasets._base import get_data_home
    from skmeta.datasets._omniglot import fetch_omniglot, rotate_classes

_omniglot = importlib.import_module("skmeta.datasets._omniglot")

SMALL1 = "background_small1"
SMALL1_ZIP = "images_background_small1.zip"
SMALL1_ALPHABETS = ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]


def _listing(folder):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())


def _never_write_to_shared(mp, folder):
    """Keep the cache out of the shared data folder.

    When the process may write there (running as root, for whom permission bits do
    not count, or a writable SKMETA_DATA) behave as if the folder were read-only.
    """
    if os.access(folder, os.W_OK):
        mp.setattr(_omniglot, "_is_writable", lambda path: False)


@pytest.fixture(scope="module")
def shared_data_home():
    """The shared data folder from SKMETA_DATA, or skip."""
    data_home = os.environ.get("SKMETA_DATA")
    if not data_home:
        pytest.skip("SKMETA_DATA is not set: no Omniglot data to test on")
    zip_path = Path(data_home) / "omniglot" / SMALL1_ZIP
    if not zip_path.is_file():
        pytest.skip(f"{zip_path} is absent")
    return Path(data_home)


@pytest.fixture(scope="module")
def small1_zip(shared_data_home):
    return shared_data_home / "omniglot" / SMALL1_ZIP


@pytest.fixture(scope="module")
def small1(shared_data_home):
    """background_small1 at 28x28, decoded once from the shared folder, which stays as is."""
    folder = shared_data_home / "omniglot"
    before = _listing(folder)
    with pytest.MonkeyPatch.context() as mp:
        _never_write_to_shared(mp, folder)
        bunch = fetch_omniglot(subset=SMALL1, data_home=shared_data_home, download_if_missing=False)
    assert _listing(folder) == before
    return bunch


# --------------------------------------------------------------------------- real data


def test_small1_contents(small1):
    images, target = small1.images, small1.target
    assert images.shape == (2720, 1, 28, 28)
    assert images.dtype == np.float32
    assert target.shape == (2720,) and target.dtype == np.int64
    assert np.array_equal(np.unique(target), np.arange(136))
    assert np.all(np.bincount(target) == 20)
    assert len(small1.target_names) == 136
    assert sorted(set(small1.alphabet)) == SMALL1_ALPHABETS
    assert small1.alphabet.shape == (2720,)
    # labels follow sorted (alphabet, character) and name their alphabet
    assert small1.target_names == sorted(small1.target_names)
    assert small1.target_names[0] == "Balinese/character01"
    names = np.asarray(small1.target_names)[target]
    assert all(n.split("/")[0] == a for n, a in zip(names, small1.alphabet, strict=True))
    assert np.all(np.diff(target) >= 0)
    # each character drawn once by each of the 20 drawers
    for label in (0, 57, 135):
        assert sorted(small1.drawer[target == label]) == list(range(1, 21))
    assert "Lake" in small1.DESCR and "MIT" in small1.DESCR


def test_small1_ink_is_one(small1):
    images = small1.images
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.max() == pytest.approx(1.0, abs=0.05)
    # mostly background (0) with a little ink
    assert np.median(images) == 0.0
    assert (images == 0).mean() > 0.5
    assert images[:, :, [0, -1], :].mean() < 0.01  # the borders are background
    assert images[:, :, :, [0, -1]].mean() < 0.01
    ink = images.mean(axis=(1, 2, 3))
    assert np.all(ink > 0.005) and np.all(ink < 0.3)
    assert 0.02 < ink.mean() < 0.2


def test_small1_return_X_y_and_determinism(small1, shared_data_home):
    with pytest.MonkeyPatch.context() as mp:
        _never_write_to_shared(mp, shared_data_home / "omniglot")
        X, y = fetch_omniglot(subset=SMALL1, data_home=shared_data_home, return_X_y=True)
    assert np.array_equal(X, small1.images)
    assert np.array_equal(y, small1.target)


def test_cache_created_and_reused(small1, small1_zip, tmp_path, monkeypatch):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    shutil.copy(small1_zip, folder)
    first = fetch_omniglot(subset=SMALL1, data_home=tmp_path)
    caches = sorted(p.name for p in folder.glob("*.npz"))
    assert len(caches) == 1 and SMALL1 in caches[0] and "28" in caches[0]
    assert not list(folder.glob(".*"))  # no temporary files left
    # a fresh decode in another folder gives the same arrays
    assert np.array_equal(first.images, small1.images)
    assert np.array_equal(first.target, small1.target)

    def fail(*args, **kwargs):
        raise AssertionError("decoded the zip again")

    monkeypatch.setattr(_omniglot, "_decode_zip", fail)
    second = fetch_omniglot(subset=SMALL1, data_home=tmp_path)
    for key in ("images", "target", "alphabet", "drawer"):
        assert np.array_equal(second[key], first[key]), key
        assert second[key].dtype == first[key].dtype, key
    assert second.target_names == first.target_names
    # the cache is keyed by image size
    with pytest.raises(AssertionError, match="decoded the zip again"):
        fetch_omniglot(subset=SMALL1, data_home=tmp_path, image_size=20)
    # and is enough without the zip
    (folder / SMALL1_ZIP).unlink()
    X, y = fetch_omniglot(
        subset=SMALL1, data_home=tmp_path, download_if_missing=False, return_X_y=True
    )
    assert np.array_equal(X, first.images) and np.array_equal(y, first.target)


def test_shared_folder_is_not_written(small1, shared_data_home):
    # the `small1` fixture read the shared folder; reading again writes nothing either
    folder = shared_data_home / "omniglot"
    before = _listing(folder)
    with pytest.MonkeyPatch.context() as mp:
        _never_write_to_shared(mp, folder)
        X = fetch_omniglot(subset=SMALL1, data_home=shared_data_home, return_X_y=True)[0]
    assert _listing(folder) == before
    assert np.array_equal(X, small1.images)


def test_read_only_folder_is_not_written(small1_zip, tmp_path):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    shutil.copy(small1_zip, folder)
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("permission bits do not stop this user (root) from writing")
        X, _ = fetch_omniglot(subset=SMALL1, data_home=tmp_path, image_size=8, return_X_y=True)
        assert X.shape == (2720, 1, 8, 8)
        assert [p.name for p in folder.iterdir()] == [SMALL1_ZIP]
    finally:
        folder.chmod(0o755)


def test_simulated_download(small1_zip, tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    shutil.copy(small1_zip, server)
    monkeypatch.setitem(_omniglot.OMNIGLOT_URLS, SMALL1, (server / SMALL1_ZIP).as_uri())
    home = tmp_path / "home"  # does not exist yet
    bunch = fetch_omniglot(subset=SMALL1, data_home=home, image_size=20)
    downloaded = home / "omniglot" / SMALL1_ZIP
    assert downloaded.read_bytes() == small1_zip.read_bytes()
    assert not list((home / "omniglot").glob(".*"))  # no temporary files left
    assert bunch.images.shape == (2720, 1, 20, 20)
    assert bunch.images.dtype == np.float32
    assert 0.0 <= bunch.images.min() and bunch.images.max() <= 1.0
    assert len(np.unique(bunch.target)) == 136


# --------------------------------------------------------------------------- no data needed


def _png(pixels):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    """A tiny Omniglot-like zip (105x105, 1-bit PNGs) served as the 'evaluation' subset."""
    pytest.importorskip("PIL")
    rng = np.random.default_rng(0)
    layout = {"Beta": ["character02", "character01"], "Alpha": ["character01"]}
    images = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for alphabet, characters in layout.items():
            for character in characters:
                for drawer in (3, 1, 2):
                    pixels = np.where(rng.random((105, 105)) < 0.1, 0, 255).astype(np.uint8)
                    name = f"images_evaluation/{alphabet}/{character}/0999_{drawer:02d}.png"
                    archive.writestr(name, _png(pixels))
                    images[name] = pixels
    data = buffer.getvalue()
    path = tmp_path / "server" / "images_evaluation.zip"
    path.parent.mkdir()
    path.write_bytes(data)
    monkeypatch.setitem(_omniglot.OMNIGLOT_URLS, "evaluation", path.as_uri())
    monkeypatch.setitem(
        _omniglot.OMNIGLOT_CHECKSUMS, "evaluation", ("sha256", hashlib.sha256(data).hexdigest())
    )
    return path, images


def test_fake_zip_layout_and_ink(fake_server, tmp_path):
    _, images = fake_server
    bunch = fetch_omniglot(subset="evaluation", data_home=tmp_path / "home", image_size=105)
    assert bunch.target_names == ["Alpha/character01", "Beta/character01", "Beta/character02"]
    assert bunch.target.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert bunch.alphabet.tolist() == ["Alpha"] * 3 + ["Beta"] * 6
    assert bunch.drawer.tolist() == [1, 2, 3] * 3
    names = sorted(images, key=lambda n: tuple(n.split("/")[1:]))
    expected = np.stack([1 - images[n] / 255 for n in names])[:, None].astype(np.float32)
    assert np.array_equal(bunch.images, expected)  # no resize: exact, ink = 1


def test_download_checksum_mismatch_leaves_nothing(fake_server, tmp_path, monkeypatch):
    path, _ = fake_server
    monkeypatch.setitem(_omniglot.OMNIGLOT_CHECKSUMS, "evaluation", ("sha256", "0" * 64))
    home = tmp_path / "home"
    with pytest.raises(OSError, match="Checksum mismatch"):
        fetch_omniglot(subset="evaluation", data_home=home)
    assert list((home / "omniglot").iterdir()) == []


def test_corrupted_download_raises(tmp_path, monkeypatch):
    # the real small1 checksum, but the server sends something else
    bad = tmp_path / "server" / SMALL1_ZIP
    bad.parent.mkdir()
    bad.write_bytes(b"not the omniglot zip")
    monkeypatch.setitem(_omniglot.OMNIGLOT_URLS, SMALL1, bad.as_uri())
    with pytest.raises(OSError, match="sha256"):
        fetch_omniglot(subset=SMALL1, data_home=tmp_path / "home")
    assert list((tmp_path / "home" / "omniglot").iterdir()) == []


def test_missing_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("SKMETA_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as excinfo:
        fetch_omniglot(subset="evaluation", download_if_missing=False)
    assert isinstance(excinfo.value, OSError)
    message = str(excinfo.value)
    assert str(tmp_path / "omniglot" / "images_evaluation.zip") in message
    assert _omniglot.OMNIGLOT_URLS["evaluation"] in message
    assert "SKMETA_DATA" in message and "data_home" in message
    assert not (tmp_path / "omniglot").exists()  # nothing created


@pytest.mark.parametrize("subset", ["", "Background", "images_background", "train", None, 1])
def test_bad_subset(subset, tmp_path):
    with pytest.raises(ValueError, match="subset must be one of .*background_small2"):
        fetch_omniglot(subset=subset, data_home=tmp_path)


@pytest.mark.parametrize("image_size", [0, -3, 2.5, "28", True, None])
def test_bad_image_size(image_size, tmp_path):
    with pytest.raises(ValueError, match="image_size must be an int >= 1"):
        fetch_omniglot(subset=SMALL1, data_home=tmp_path, image_size=image_size)


def test_get_data_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SKMETA_DATA", raising=False)
    assert get_data_home() == os.path.join(os.path.expanduser("~"), "skmeta_data")
    monkeypatch.setenv("SKMETA_DATA", str(tmp_path / "env"))
    assert get_data_home() == str(tmp_path / "env")
    assert get_data_home(tmp_path / "arg") == str(tmp_path / "arg")
    assert get_data_home("~/x") == os.path.join(os.path.expanduser("~"), "x")
    assert not (tmp_path / "env").exists() and not (tmp_path / "arg").exists()


# --------------------------------------------------------------------------- rotate_classes


def test_rotate_classes():
    rng = np.random.default_rng(0)
    X = rng.random((6, 1, 5, 5)).astype(np.float32)
    y = np.array([10, 4, 10, 7, 4, 7])
    groups = np.array(["a", "b", "a", "c", "b", "c"])
    X_rot, y_rot, groups_rot = rotate_classes(X, y, groups=groups)
    assert X_rot.shape == (24, 1, 5, 5) and X_rot.dtype == X.dtype
    assert len(np.unique(y_rot)) == 4 * len(np.unique(y))
    assert np.array_equal(np.unique(y_rot), np.arange(12))
    y_index = np.searchsorted(np.unique(y), y)
    for a, angle in enumerate((0, 90, 180, 270)):
        block = slice(a * 6, (a + 1) * 6)
        assert np.array_equal(X_rot[block], np.rot90(X, k=angle // 90, axes=(2, 3)))
        assert np.array_equal(y_rot[block], y_index * 4 + a)
        assert np.array_equal(groups_rot[block], groups)
    assert np.array_equal(X_rot[:6], X)
    assert y_rot.dtype == np.int64
    # same class and angle <=> same new label
    pairs = set(zip(np.tile(y, 4), np.repeat(np.arange(4), 6), y_rot, strict=True))
    assert len(pairs) == 12


def test_rotate_classes_angles():
    X = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    X_rot, y_rot = rotate_classes(X, ["u", "v"], angles=(-90, 180))
    assert np.array_equal(X_rot[0], np.rot90(X[0], k=3))
    assert np.array_equal(X_rot[3], np.rot90(X[1], k=2))
    assert y_rot.tolist() == [0, 2, 1, 3]
    # 180 degrees keeps non-square images possible
    X_wide = np.zeros((2, 1, 2, 3))
    assert rotate_classes(X_wide, [0, 1], angles=(0, 180))[0].shape == (4, 1, 2, 3)


@pytest.mark.parametrize(
    "angles, match",
    [
        ((0, 45), "multiples of 90"),
        ((90.5,), "multiples of 90"),
        (("90",), "multiples of 90"),
        ((), "at least one"),
        ((0, 360), "different modulo 360"),
    ],
)
def test_rotate_classes_bad_angles(angles, match):
    with pytest.raises(ValueError, match=match):
        rotate_classes(np.zeros((2, 1, 4, 4)), [0, 1], angles=angles)


def test_rotate_classes_bad_shapes():
    with pytest.raises(ValueError, match="square"):
        rotate_classes(np.zeros((2, 1, 2, 3)), [0, 1])
    with pytest.raises(ValueError, match="one label per sample"):
        rotate_classes(np.zeros((2, 1, 4, 4)), [0, 1, 2])
    with pytest.raises(ValueError, match="groups"):
        rotate_classes(np.zeros((2, 1, 4, 4)), [0, 1], groups=["a"])
    with pytest.raises(ValueError, match="at least 3"):
        rotate_classes(np.zeros((2, 4)), [0, 1])


def test_download_without_network_says_where_to_put_the_file(tmp_path, monkeypatch):
    from urllib.error import URLError

    def offline(url, *args, **kwargs):
        raise URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(_omniglot, "urlopen", offline)
    monkeypatch.setenv("SKMETA_DATA", str(tmp_path))  # never the shared data folder
    with pytest.raises(OSError) as excinfo:
        fetch_omniglot(subset="background")
    message = str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, URLError)  # the network error is kept
    zip_path = tmp_path / "omniglot" / "images_background.zip"
    assert str(zip_path) in message and str(zip_path.parent) in message
    assert _omniglot.OMNIGLOT_URLS["background"] in message
    assert "name resolution" in message and "not extracted" in message
    assert "SKMETA_DATA" in message and "data_home" in message
    assert list(zip_path.parent.iterdir()) == []  # no partial file


def test_download_from_an_unreachable_url(tmp_path, monkeypatch):
    missing = (tmp_path / "nowhere" / "images_evaluation.zip").as_uri()  # local: no network
    monkeypatch.setitem(_omniglot.OMNIGLOT_URLS, "evaluation", missing)
    with pytest.raises(OSError, match="could not be downloaded from " + missing) as excinfo:
        fetch_omniglot(subset="evaluation", data_home=tmp_path / "home")
    assert str(tmp_path / "home" / "omniglot" / "images_evaluation.zip") in str(excinfo.value)
    assert list((tmp_path / "home" / "omniglot").iterdir()) == []
