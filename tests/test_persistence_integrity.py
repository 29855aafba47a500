"""The safe format refuses damaged, truncated, edited and foreign files with clear errors.

Every byte of a format-3 file (a safetensors file, see skmeta.io.safetensors) is under
its SHA-256 or checked by the strict parser, so a damaged file must be
refused (or, in principle, load identically), never load as a different model. An
edited file whose checksum was recomputed must still not make the loader allocate
its network before the shapes are checked against the file's tensors.
"""

import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _skmeta_files import rewrite, rewrite_raw, rewrite_v1, save_v1
from hypothesis import given, settings
from hypothesis import strategies as st

import skmeta
from skmeta import MAMLClassifier, MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks
from skmeta.io import safetensors as _safetensors

FAST = dict(max_epochs=1, verbose=0, random_state=0)
# deterministic in CI; no example database written into the repository
SCALE = float(os.environ.get("SKMETA_PROPERTY_SCALE", "1"))
PROPERTY = dict(deadline=None, derandomize=True, database=None, print_blob=True)


@pytest.fixture(scope="module")
def models():
    tasks = make_sinusoid_tasks(n_tasks=20, n_samples=20, random_state=0)
    meta = MAMLRegressor(k_shot=10, module__hidden=(8, 8), **FAST).fit(tasks)
    X, y = tasks[0]
    adapted = meta.adapt(X[:10], y[:10])
    return SimpleNamespace(meta=meta, adapted=adapted, X=X, y=y,
                           expected={"adapted": adapted.predict(X),
                                     "meta": meta.adapt(X, y).predict(X)})


@pytest.fixture(scope="module")
def files(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    out = {}
    for kind in ("adapted", "meta"):
        path = folder / f"{kind}.skmeta"
        skmeta.save(getattr(models, kind), path)
        out[kind] = path.read_bytes()
    return SimpleNamespace(folder=folder, data=out)


def _predict(model, kind, models):
    if kind == "adapted":
        return model.predict(models.X)
    return model.adapt(models.X, models.y).predict(models.X)


def _refused(path, match=None):
    """Load ``path``, expecting skmeta's ValueError; return its message."""
    with pytest.raises(ValueError) as info:
        skmeta.load(path)
    message = str(info.value)
    assert os.fspath(path) in message  # names the file
    assert "weights_only" not in message  # never torch's advice
    if match is not None:
        assert re.search(match, message), message
    return message


def _load_or_refuse(path, kind, models):
    """Either a clear ValueError naming the file, or a model that predicts identically."""
    try:
        loaded = skmeta.load(path)
    except ValueError as exc:
        assert os.fspath(path) in str(exc) and "weights_only" not in str(exc)
        return False
    np.testing.assert_array_equal(_predict(loaded, kind, models), models.expected[kind])
    return True


# ---------------------------------------------------------------- round trip


def test_format_3_is_a_safetensors_file(files):
    data = files.data["adapted"]
    n = int.from_bytes(data[:8], "little")
    assert data[8:9] == b"{" and n % 8 == 0
    table = json.loads(data[8:8 + n])
    meta = table.pop("__metadata__")
    assert meta[_safetensors.VERSION_KEY] == str(skmeta.io.FORMAT_VERSION) == "3"
    assert len(meta[_safetensors.DIGEST_KEY]) == 64 and meta["format"] == "pt"
    assert json.loads(meta[_safetensors.HEADER_KEY])["kind"] == "adapted"
    assert max(e["data_offsets"][1] for e in table.values()) == len(data) - 8 - n
    _, header, groups = _safetensors.read(files.folder / "adapted.skmeta", max_version=3)
    assert set(groups) == {"module"} and "magic" not in header
    assert b"pickle" not in data and b"\x80\x02" not in data[:64]
    _, header, groups = _safetensors.read(files.folder / "meta.skmeta", max_version=3)
    assert set(groups) == {"module", "optimizer"}  # MAML's inner state holds no tensors


def test_both_kinds_round_trip(files, models, tmp_path):
    for kind in ("adapted", "meta"):
        path = tmp_path / f"{kind}.skmeta"
        path.write_bytes(files.data[kind])
        np.testing.assert_array_equal(_predict(skmeta.load(path), kind, models),
                                      models.expected[kind])


def test_meta_learner_optimizer_state_round_trips_without_pickle(models, tmp_path):
    path = tmp_path / "meta.skmeta"
    models.meta.save(path)
    loaded = skmeta.load(path)
    a, b = models.meta.optimizer_.state_dict(), loaded.optimizer_.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i, state in a["state"].items():
        for key, value in state.items():
            back = b["state"][i][key]
            assert torch.equal(value, back) and value.dtype == back.dtype


def test_other_dtypes_and_empty_tensors_round_trip(tmp_path):
    groups = {"g": {"bf16": torch.randn(3, 2).to(torch.bfloat16), "b": torch.tensor([True, False]),
                    "i": torch.arange(5), "empty": torch.zeros(0, 4), "scalar": torch.tensor(2.5),
                    "t": torch.randn(4, 3).t(), "h": torch.randn(3).half(),
                    "u8": torch.arange(3, dtype=torch.uint8)}}
    with open(tmp_path / "c", "wb") as f:
        _safetensors.write(f, 3, {"x": 1}, groups)
    _, header, back = _safetensors.read(tmp_path / "c", max_version=3)
    for name, tensor in groups["g"].items():
        assert torch.equal(back["g"][name], tensor) and back["g"][name].dtype == tensor.dtype
    assert header["x"] == 1


# ------------------------------------------------------------ damaged files


@settings(max_examples=int(80 * SCALE), **PROPERTY)
@given(kind=st.sampled_from(["adapted", "meta"]), where=st.floats(0, 1, exclude_max=True),
       xor=st.integers(1, 255))
def test_a_flipped_byte_anywhere_is_refused(files, models, kind, where, xor):
    data = bytearray(files.data[kind])
    data[int(where * len(data))] ^= xor
    path = files.folder / "flipped.skmeta"
    path.write_bytes(bytes(data))
    assert not _load_or_refuse(path, kind, models)  # every byte is under the checksum


def _offset_of(data, text):
    return data.index(text.encode())


@pytest.mark.parametrize("region, offset, match", [
    ("header length, low byte", 0, "malformed|truncated"),
    ("header length, high byte", 7, "not a skmeta model file"),
    ("header opening brace", 8, "not a skmeta model file"),
    ("tensor table", "data_offsets", "malformed"),
    ("tensor shape", "shape", "malformed|SHA-256"),
    ("skmeta's header", "skmeta_version", "SHA-256"),
    ("format version", "skmeta.format_version", "malformed|SHA-256"),
    ("digest", "digest", "SHA-256"),
    ("header padding", "padding", "malformed"),
    ("first tensor byte", "data", "SHA-256"),
    ("last tensor byte", -1, "SHA-256"),
])
def test_damage_in_each_region_is_named(files, tmp_path, region, offset, match):
    data = bytearray(files.data["meta"])
    n = int.from_bytes(data[:8], "little")
    if offset == "data":
        offset = 8 + n
    elif offset == "digest":
        offset = _offset_of(data, _safetensors.DIGEST_KEY) + 20
    elif offset == "padding":
        if data[8 + n - 1] != 0x20:  # no padding in this file: pad it as a writer may
            data = bytearray((n + 8).to_bytes(8, "little") + data[8:8 + n] + b" " * 8
                             + data[8 + n:])
            n += 8
        offset = 8 + n - 1
    elif isinstance(offset, str):
        offset = _offset_of(data, offset) + 2
    data[offset] ^= 0x29 if region == "header padding" else 0x10  # a space becomes a tab
    path = tmp_path / "damaged.skmeta"
    path.write_bytes(bytes(data))
    _refused(path, match)


@pytest.mark.parametrize("keep", [0, 1, 3, 4, 8, 9, 20, 100, "header", "half", -1])
def test_truncated_files_are_refused(files, tmp_path, keep):
    data = files.data["meta"]
    n = int.from_bytes(data[:8], "little")
    cut = {"half": len(data) // 2, "header": 8 + n}.get(keep, keep)
    cut = cut if cut >= 0 else len(data) + cut
    path = tmp_path / "cut.skmeta"
    path.write_bytes(data[:cut])
    if cut == 0:
        _refused(path, r"not a skmeta model file: it is empty \(0 bytes\)")
    elif cut < 4:
        _refused(path, "not a skmeta model file")  # too short to tell what it was
    elif cut <= 8:
        _refused(path, f"truncated: a skmeta model file has at least 10 bytes, this one has {cut}")
    elif cut < 8 + n:
        _refused(path, f"truncated: its header announces {n} bytes, the file has {cut} bytes")
    else:
        _refused(path, f"truncated: expected {len(data)} bytes, found {cut}")


def test_appended_bytes_are_refused(files, tmp_path):
    path = tmp_path / "longer.skmeta"
    path.write_bytes(files.data["adapted"] + b"\0")
    _refused(path, "bytes but its header announces .*appended")


def test_newer_and_unknown_versions(files, tmp_path):
    path = tmp_path / "v.skmeta"
    path.write_bytes(files.data["adapted"])
    rewrite(path, lambda h: h.update(skmeta_version="7.1"), version=4)
    _refused(path, r"format version 4 \(written by skmeta 7.1\), newer than this skmeta reads "
                   r"\(up to 3\)\. Upgrade skmeta \(pip install --upgrade skmeta\)")
    path.write_bytes(files.data["adapted"])
    rewrite(path, version=0)
    _refused(path, "version 0, which was never written")


# ----------------------------------------------------------- foreign files


def test_foreign_files_are_named(tmp_path):
    cases = {
        "plain.pkl": (pickle.dumps({"weights": [1.0, 2.0]}), "it is a pickle stream"),
        "text.txt": (b"hello world\n", "it is a text file starting with 'hello world"),
        "data.json": (json.dumps({"a": 1}).encode(), "it looks like a JSON file"),
        "arr.npy": (b"\x93NUMPY\x01\x00" + bytes(20), "it is a numpy .npy file"),
        "w.safetensors": ((2).to_bytes(8, "little") + b"{}",
                          "it is a safetensors file without skmeta's metadata"),
    }
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        _refused(tmp_path / name, "not a skmeta model file: " + match)
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    _refused(tmp_path / "a.npz", "not a skmeta model file: it is a zip archive holding 'x.npy'")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    _refused(tmp_path / "other.pt", "not a skmeta model file: it is a torch.save archive of "
                                    "something else")


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickles_are_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.skmeta"
    path.write_bytes(pickle.dumps({"header": _Hostile(marker)}))
    _refused(path, "it is a pickle stream .*never unpickles")
    torch.save({"header": _Hostile(marker), "tensors": {}}, path)  # inside a torch zip
    message = _refused(path, "pickled objects other than tensors and plain data "
                             r"\(it names (posix|nt|os)\.system")
    assert "refused it without running" in message
    assert not marker.exists()


# ------------------------------------------------------ edited, resealed files


_ENTRY_FIELDS = st.sampled_from(["shape", "data_offsets", "dtype", "extra"])
_VALUES = st.one_of(st.integers(-3, 2**40), st.just(-1), st.just(2**64),
                    st.lists(st.integers(0, 2**20), max_size=3), st.just("float64"),
                    st.just("object"), st.none(), st.text(max_size=3), st.just("F64"),
                    st.lists(st.integers(-1, 2**40), min_size=2, max_size=2))


@settings(max_examples=int(60 * SCALE), **PROPERTY)
@given(field=_ENTRY_FIELDS, value=_VALUES, which=st.integers(0, 5))
def test_edited_tensor_tables_are_refused_or_harmless(files, models, field, value, which):
    """An editor who recomputes the checksum can still only get a clear ValueError."""
    path = files.folder / "edited.skmeta"
    path.write_bytes(files.data["adapted"])

    def edit(table):
        names = sorted(k for k in table if k != "__metadata__")
        table[names[which % len(names)]][field] = value

    rewrite_raw(path, edit)
    try:
        skmeta.load(path)
    except ValueError as exc:
        assert os.fspath(path) in str(exc)


def test_edits_that_do_not_fit_the_network_are_refused(files, tmp_path):
    path = tmp_path / "a.skmeta"
    path.write_bytes(files.data["adapted"])
    rewrite(path, groups_edit=lambda g: g["module"].pop(sorted(g["module"])[0]))
    _refused(path, "inconsistent: the network MLP.* does not match its tensors .*not in the "
                   "file.*nothing was allocated")
    path.write_bytes(files.data["adapted"])
    rewrite(path, groups_edit=lambda g: g["module"].update(extra=torch.zeros(3)))
    _refused(path, "extra: in the file only")
    path.write_bytes(files.data["adapted"])
    rewrite(path, groups_edit=lambda g: g["module"].update(
        {k: v.double() for k, v in g["module"].items()}))
    _refused(path, "built \\[.*\\] float32, file \\[.*\\] float64")
    path.write_bytes(files.data["meta"])
    rewrite(path, lambda h: h["attrs"].update(evil=1))
    _refused(path, "malformed: its fitted attributes")
    path.write_bytes(files.data["meta"])
    rewrite(path, lambda h: h["params"].update(no_such_parameter=1))
    _refused(path, "cannot be loaded: MAMLRegressor got an unexpected parameter "
                   "'no_such_parameter'")
    path.write_bytes(files.data["meta"])
    rewrite(path, lambda h: h["params"].update(initialized_=True))
    _refused(path, "malformed: 'initialized_' is not a parameter")
    path.write_bytes(files.data["meta"])
    rewrite(path, lambda h: h["optimizer_state"]["__items__"].pop())
    _refused(path, "optimizer state does not fit the optimizer Adam")
    path.write_bytes(files.data["adapted"])
    rewrite(path, lambda h: h.update(kind="meta"))
    _refused(path, "Unknown model class 'AdaptedRegressor' .kind 'meta'.")
    path.write_bytes(files.data["adapted"])
    rewrite(path, lambda h: h["attrs"].update(classes_={"__array__": [1], "dtype": "|V9999"}))
    _refused(path, "an array of dtype .V9999 cannot be stored")
    path.write_bytes(files.data["adapted"])
    rewrite(path, lambda h: h["attrs"].update(classes_={"__array__": ["a"], "dtype": "<U99999"}))
    assert skmeta.load(path).classes_.dtype == np.dtype("<U1")  # never wider than its strings


_MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys, warnings
    import skmeta

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    skmeta.load(sys.argv[1])  # warm up: every import and code path of a good load
    skmeta.load(sys.argv[2])
    baseline = peak_mb()
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize")) * 1024
    # a regression fails with an allocation error instead of exhausting the machine
    resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), resource.RLIM_INFINITY))
    out = {}
    for path in sys.argv[3:]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                skmeta.load(path)
            out[path] = ["loaded", peak_mb() - baseline]
        except Exception as exc:
            out[path] = [type(exc).__name__ + ": " + str(exc)[:3000], peak_mb() - baseline]
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_inflated_constructor_arguments_allocate_nothing(files, models, tmp_path):
    """hidden=[10**9] used to allocate ~4 GB before failing; now the shapes are checked
    on the meta device first (the checksum is recomputed, so only that check can
    catch the edit)."""
    good_a, good_m = tmp_path / "good_a.skmeta", tmp_path / "good_m.skmeta"
    good_a.write_bytes(files.data["adapted"])
    good_m.write_bytes(files.data["meta"])
    huge = {"__tuple__": [10**9]}
    cases = {}

    def case(name, data, edit, v1=False):
        path = tmp_path / name
        if v1:
            save_v1(getattr(models, data), path)
            rewrite_v1(path, edit)
        else:
            path.write_bytes(files.data[data])
            rewrite(path, edit)
        cases[os.fspath(path)] = name

    def kwargs_edit(**kw):
        return lambda h: h["attrs"]["module_kwargs_"]["__dict__"].update(kw)

    case("adapted_hidden", "adapted", kwargs_edit(hidden=huge))
    case("meta_hidden", "meta", lambda h: h["params"].update(module__hidden=huge))
    case("v1_adapted_hidden", "adapted", kwargs_edit(hidden=huge), v1=True)
    case("v1_meta_hidden", "meta", lambda h: h["params"].update(module__hidden=huge), v1=True)
    # an explicit device= argument must not escape the meta device
    case("linear_on_cpu", "adapted", lambda h: h["attrs"].update(
        module_class_={"__class__": "torch.nn.modules.linear:Linear"},
        module_kwargs_={"__dict__": {"in_features": 12000, "out_features": 12000,
                                     "device": "cpu"}}))
    # a criterion is built too, although the file holds none of its tensors
    case("criterion", "meta", lambda h: h["params"].update(
        criterion={"__class__": "torch.nn.modules.linear:Linear"},
        criterion__in_features=10**5, criterion__out_features=10**5))
    root = os.path.dirname(os.path.dirname(skmeta.__file__))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(good_a), str(good_m),
                             *cases], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for path, (outcome, increase_mb) in report.items():
        name = cases[path]
        assert outcome.startswith("ValueError: "), (name, outcome)
        if name == "criterion":
            assert "would allocate 40000400000 bytes" in outcome, outcome
        else:
            assert "inconsistent" in outcome and "nothing was allocated" in outcome, outcome
        assert increase_mb < 200, (name, increase_mb)


# --------------------------------------------------------------- version 1


def test_version_1_files_still_load_with_a_warning(models, tmp_path):
    for kind in ("adapted", "meta"):
        path = tmp_path / f"{kind}.v1"
        save_v1(getattr(models, kind), path)
        assert zipfile.is_zipfile(path)
        with pytest.warns(FutureWarning, match="format version 1, which has no integrity "
                                               "check.*Save it again with skmeta.save"):
            loaded = skmeta.load(path)
        np.testing.assert_array_equal(_predict(loaded, kind, models), models.expected[kind])
        skmeta.save(loaded, tmp_path / f"{kind}.v2")  # the conversion the warning asks for
        np.testing.assert_array_equal(_predict(skmeta.load(tmp_path / f"{kind}.v2"), kind,
                                               models), models.expected[kind])


def test_object_labels_round_trip(pool, tmp_path):
    X, y = pool
    labels = np.array([f"c{i}" for i in range(20)], dtype=object)[y]  # e.g. a pandas column
    clf = MAMLClassifier(n_way=3, k_shot=2, n_query=2, n_episodes=10, **FAST).fit(X, labels)
    adapted = clf.adapt(X[y < 3], labels[y < 3])
    adapted.save(tmp_path / "clf.skmeta")
    loaded = skmeta.load(tmp_path / "clf.skmeta")
    assert loaded.classes_.dtype == object and loaded.classes_.tolist() == ["c0", "c1", "c2"]
    np.testing.assert_array_equal(loaded.predict(X), adapted.predict(X))


def test_version_1_classifier_keeps_its_labels(pool, tmp_path):
    X, y = pool
    labels = np.array([f"c{i}" for i in range(20)])[y]
    clf = MAMLClassifier(n_way=3, k_shot=2, n_query=2, n_episodes=10, **FAST).fit(X, labels)
    adapted = clf.adapt(X[y < 3], labels[y < 3])
    save_v1(adapted, tmp_path / "clf.v1")
    with pytest.warns(FutureWarning):
        loaded = skmeta.load(tmp_path / "clf.v1")
    np.testing.assert_array_equal(loaded.predict(X), adapted.predict(X))


def test_damaged_version_1_files_are_refused(models, tmp_path):
    path = tmp_path / "a.v1"
    save_v1(models.adapted, path)
    data = path.read_bytes()
    for n in (10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:n])
        _refused(path, "zip archive that cannot be read.*truncated or damaged")
    save_v1(models.adapted, path)
    rewrite_v1(path, lambda h: h.update(format_version=5))
    _refused(path, "announces skmeta file format version 5; zip files were only written in "
                   "format version 1")


def test_compressed_version_1_archives_are_refused(models, tmp_path):
    """A deflated entry could inflate far beyond the file (torch.load would read it)."""
    path, packed = tmp_path / "a.v1", tmp_path / "packed.v1"
    save_v1(models.adapted, path)
    with zipfile.ZipFile(path) as src, \
            zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    _refused(packed, r"zip entries \[.*\] are compressed, which torch.save never does")


def test_a_tensor_group_is_one_entry(models, tmp_path, monkeypatch):
    """More learnable state (e.g. learned inner learning rates) is one _EXTRA_GROUPS entry."""
    from skmeta.io import format as persistence

    path = tmp_path / "meta.skmeta"
    models.meta.save(path)  # written without the group
    monkeypatch.setitem(persistence._EXTRA_GROUPS, "extra_state", "module_")  # a stand-in
    _refused(path, "holds no 'extra_state' tensors, which MAMLRegressor needs for module_")
    models.meta.save(path)
    _, _, groups = _safetensors.read(path, max_version=3)
    assert set(groups) == {"module", "optimizer", "extra_state"}
    loaded = skmeta.load(path)
    for a, b in zip(loaded.module_.parameters(), models.meta.module_.parameters()):
        assert torch.equal(a, b)
