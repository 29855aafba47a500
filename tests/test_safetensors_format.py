"""skmeta's file format is a standard safetensors file; the previous formats still load.

The reader is skmeta's own (no dependency on the ``safetensors`` package); these
tests check it against the official package when it is installed, its strict
parsing of hostile headers, and the files the previous release wrote.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _skmeta_files import read_raw, write_raw

import skmeta
from skmeta import MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks
from skmeta.io import safetensors as _safetensors

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tasks = make_sinusoid_tasks(n_tasks=10, n_samples=20, random_state=0)
    meta = MAMLRegressor(k_shot=10, module__hidden=(8,), max_epochs=1, verbose=0,
                         random_state=0).fit(tasks)
    X, y = tasks[0]
    adapted = meta.adapt(X[:10], y[:10])
    folder = tmp_path_factory.mktemp("st")
    meta.save(folder / "meta.skmeta")
    adapted.save(folder / "adapted.skmeta")
    return meta, adapted, X, y, folder


def _refused(path, match):
    with pytest.raises(ValueError, match=match) as info:
        skmeta.load(path)
    assert os.fspath(path) in str(info.value)


def test_the_official_package_reads_skmeta_files(saved):
    safetensors = pytest.importorskip("safetensors")
    meta, adapted, X, y, folder = saved
    for obj, name in ((meta, "meta"), (adapted, "adapted")):
        with safetensors.safe_open(folder / f"{name}.skmeta", framework="pt") as f:
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        assert metadata[_safetensors.VERSION_KEY] == "3"
        assert json.loads(metadata[_safetensors.HEADER_KEY])["class"] == type(obj).__name__
        state = obj.module_.state_dict()
        assert {k for k in tensors if k.startswith("module/")} == {f"module/{k}" for k in state}
        for k, v in state.items():
            assert torch.equal(tensors[f"module/{k}"], v)


def test_files_the_official_package_writes_with_skmeta_metadata_load(saved, tmp_path):
    st = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open

    meta, adapted, X, y, folder = saved
    for name in ("meta", "adapted"):
        with safe_open(folder / f"{name}.skmeta", framework="pt") as f:
            metadata = f.metadata()
        tensors = st.load_file(folder / f"{name}.skmeta")
        st.save_file(tensors, tmp_path / f"{name}.safetensors", metadata=metadata)
        loaded = skmeta.load(tmp_path / f"{name}.safetensors")
        model = loaded if name == "adapted" else loaded.adapt(X[:10], y[:10])
        np.testing.assert_array_equal(model.predict(X), adapted.predict(X))
        # the digest covers the tensors: another tensor under the same metadata is refused
        tensors[sorted(tensors)[0]] = tensors[sorted(tensors)[0]] + 1
        st.save_file(tensors, tmp_path / "edited.safetensors", metadata=metadata)
        _refused(tmp_path / "edited.safetensors", "fails its SHA-256 integrity check")


def test_a_plain_safetensors_file_is_named(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    st.save_file({"weight": torch.zeros(2, 3)}, tmp_path / "hf.safetensors")
    _refused(tmp_path / "hf.safetensors", "not a skmeta model file: it is a safetensors file "
                                          "without skmeta's metadata")


def _edited(saved, tmp_path, edit, *, kind="adapted", reseal=True):
    table, data = read_raw(saved[4] / f"{kind}.skmeta")
    data = edit(table, data) or data
    path = tmp_path / "edited.skmeta"
    write_raw(path, table, data, reseal=reseal)
    return path


def _entries(table):
    return sorted((k for k in table if k != "__metadata__"),
                  key=lambda k: table[k]["data_offsets"])


def test_strict_parsing_of_the_tensor_table(saved, tmp_path):
    def overlap(table, data):
        a, b = _entries(table)[:2]
        table[b]["data_offsets"] = table[a]["data_offsets"]

    _refused(_edited(saved, tmp_path, overlap), "overlaps the tensor before it")

    def hole(table, data):  # a gap in the middle, the data one byte longer
        for k in _entries(table)[1:]:
            table[k]["data_offsets"] = [o + 4 for o in table[k]["data_offsets"]]
        first = table[_entries(table)[0]]["data_offsets"][1]
        return data[:first] + bytes(4) + data[first:]

    _refused(_edited(saved, tmp_path, hole), "leaves a hole before it")

    def beyond(table, data):
        last = _entries(table)[-1]
        table[last]["data_offsets"] = [o + 1000 for o in table[last]["data_offsets"]]

    _refused(_edited(saved, tmp_path, beyond), "truncated: expected")

    def dtype(table, data):
        table[_entries(table)[0]]["dtype"] = "F8_E4M3"

    _refused(_edited(saved, tmp_path, dtype), "unknown dtype 'F8_E4M3'")

    def wrong_size(table, data):
        table[_entries(table)[0]]["shape"] = [10**6]

    _refused(_edited(saved, tmp_path, wrong_size), "has shape .1000000. of F32")

    def extra_field(table, data):
        table[_entries(table)[0]]["pickle"] = "x"

    _refused(_edited(saved, tmp_path, extra_field), "is not described by exactly")

    def unnamed(table, data):
        k = _entries(table)[0]
        table[k.replace("/", "_")] = table.pop(k)

    _refused(_edited(saved, tmp_path, unnamed), "is not named group/name")

    def metadata(table, data):
        table["__metadata__"]["extra"] = 1

    _refused(_edited(saved, tmp_path, metadata), "__metadata__ is not a table of strings")


def test_strict_parsing_of_the_header_bytes(saved, tmp_path):
    raw = (saved[4] / "adapted.skmeta").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    head, data = raw[8:8 + n].rstrip(b" "), raw[8 + n:]
    path = tmp_path / "h.skmeta"

    def put(header, body=data):
        header += b" " * (-len(header) % 8)
        path.write_bytes(len(header).to_bytes(8, "little") + header + body)

    start = head.index(b'"module/')  # a tensor entry, written twice
    entry = head[start:head.index(b"}", start) + 1]
    put(head[:-1] + b"," + entry + b"}")
    _refused(path, "not valid JSON .the key .* appears twice")
    put(head.replace(b'"shape":[', b'"shape":[NaN,', 1))
    _refused(path, "not valid JSON .NaN is not a JSON number")
    put(head.replace(b",", b",\n", 1))
    _refused(path, "whitespace other than its trailing padding")
    path.write_bytes((10**9).to_bytes(8, "little") + b"{" + bytes(100))
    _refused(path, "header announces 1000000000 bytes, more than the 100000000")
    path.write_bytes((5000).to_bytes(8, "little") + b"{" + bytes(100))
    _refused(path, "truncated: its header announces 5000 bytes")
    put(b"[" + head[1:-1] + b"]")  # byte 8 is no "{": not taken for safetensors
    _refused(path, "not a skmeta model file")


def test_booleans_other_than_0_and_1_are_refused(tmp_path):
    path = tmp_path / "b.skmeta"
    with open(path, "wb") as f:
        _safetensors.write(f, 3, {}, {"g": {"b": torch.tensor([True, False])}})
    table, data = read_raw(path)
    write_raw(path, table, b"\x02\x00")
    with pytest.raises(ValueError, match="booleans other than 0 and 1"):
        _safetensors.read(path, max_version=3)


def test_unaligned_tensors_of_other_writers_are_read(tmp_path):
    path = tmp_path / "u.skmeta"
    groups = {"g": {"a": torch.tensor([1], dtype=torch.uint8), "b": torch.arange(3.0)}}
    with open(path, "wb") as f:
        _safetensors.write(f, 3, {}, groups)
    table, data = read_raw(path)
    table["g/a"]["data_offsets"], table["g/b"]["data_offsets"] = [0, 1], [1, 13]
    write_raw(path, table, data[12:] + data[:12])
    _, _, back = _safetensors.read(path, max_version=3)
    assert torch.equal(back["g"]["b"], groups["g"]["b"]) and back["g"]["a"].item() == 1


def test_complex128_is_refused_with_the_dtypes_that_can_be_stored(tmp_path):
    with open(tmp_path / "c", "wb") as f, pytest.raises(ValueError, match="g/z: only dense "
                                                        "tensors of the dtypes float16.*"):
        _safetensors.write(f, 3, {}, {"g": {"z": torch.zeros(2, dtype=torch.complex128)}})


# --------------------------------------------------- the previous release's files


def test_format_2_files_of_the_previous_release_still_load(tmp_path):
    expected = json.loads((DATA / "format2_expected.json").read_text())
    X = np.asarray(expected["X"], dtype=np.float32)
    y = np.asarray(expected["y"], dtype=np.float32)
    assert (DATA / "format2_adapted.skmeta").read_bytes()[:8] == b"\x89SKMETA\n"
    adapted = skmeta.load(DATA / "format2_adapted.skmeta")
    np.testing.assert_allclose(adapted.predict(X), expected["adapted"], rtol=0, atol=1e-6)
    meta = skmeta.load(DATA / "format2_meta.skmeta")
    np.testing.assert_allclose(meta.adapt(X, y).predict(X), expected["meta"], rtol=0, atol=1e-6)
    # saving again converts to format 3, with the same predictions
    skmeta.save(adapted, tmp_path / "now.skmeta")
    assert (tmp_path / "now.skmeta").read_bytes()[8:9] == b"{"
    np.testing.assert_array_equal(skmeta.load(tmp_path / "now.skmeta").predict(X),
                                  adapted.predict(X))


def test_damaged_format_2_files_are_refused(tmp_path):
    data = bytearray((DATA / "format2_meta.skmeta").read_bytes())
    for where, match in ((100, "SHA-256"), (len(data) - 1, "SHA-256"),
                         (26, "announces|truncated")):
        damaged = bytearray(data)
        damaged[where] ^= 0x10
        (tmp_path / "d.skmeta").write_bytes(bytes(damaged))
        _refused(tmp_path / "d.skmeta", match)
    (tmp_path / "d.skmeta").write_bytes(bytes(data[:len(data) // 2]))
    _refused(tmp_path / "d.skmeta", "truncated")
