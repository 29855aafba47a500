"""The safe model format (skmeta.save / skmeta.load) and pickling."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from _skmeta_files import rewrite
from skorch.callbacks import EarlyStopping

import skmeta
from skmeta import MAMLClassifier, MAMLRegressor, PretrainedClassifier, TaskSplit
from skmeta.io import FORMAT_VERSION
from skmeta.io import safetensors as _safetensors
from skmeta.modules import MLP

FAST = dict(max_epochs=1, verbose=0, random_state=0)


def test_adapted_regressor_roundtrip(sinusoid_tasks, tmp_path):
    est = MAMLRegressor(k_shot=10, module__hidden=(16, 16), **FAST).fit(sinusoid_tasks)
    X, y = sinusoid_tasks[0]
    adapted = est.adapt(X[:10], y[:10])
    path = tmp_path / "adapted.skmeta"
    adapted.save(path)
    loaded = skmeta.load(path)
    np.testing.assert_array_equal(loaded.predict(X), adapted.predict(X))
    assert type(loaded) is type(adapted)


def test_adapted_classifier_roundtrip_keeps_labels(pool, tmp_path):
    X, y = pool
    labels = np.array([f"class-{i}" for i in range(20)])[y]
    clf = MAMLClassifier(n_way=3, k_shot=2, n_query=2, n_episodes=20, **FAST).fit(X, labels)
    adapted = clf.adapt(X[y < 3], labels[y < 3])
    skmeta.save(adapted, tmp_path / "clf.skmeta")
    loaded = skmeta.load(tmp_path / "clf.skmeta")
    assert loaded.classes_.tolist() == ["class-0", "class-1", "class-2"]
    np.testing.assert_array_equal(loaded.predict_proba(X), adapted.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), adapted.predict(X))


def test_pretrained_classifier_adapted_model_roundtrip(pool, tmp_path):
    X, y = pool
    pre = PretrainedClassifier(n_way=3, k_shot=2, n_query=2, n_episodes=20, **FAST).fit(X, y)
    adapted = pre.adapt(X[y < 3], y[y < 3], adapt_steps=3, inner_lr=0.1)
    skmeta.save(adapted, tmp_path / "pre.skmeta")
    np.testing.assert_array_equal(skmeta.load(tmp_path / "pre.skmeta").predict_proba(X),
                                  adapted.predict_proba(X))


def test_meta_learner_roundtrip_continues_like_pickle(sinusoid_tasks, tmp_path):
    with_callbacks = MAMLRegressor(k_shot=10, train_split=TaskSplit(5),
                                   callbacks=[EarlyStopping()], **FAST).fit(sinusoid_tasks)
    with pytest.warns(UserWarning, match="callbacks, train_split"):
        with_callbacks.save(tmp_path / "cb.skmeta")
    assert skmeta.load(tmp_path / "cb.skmeta").callbacks is None
    est = MAMLRegressor(k_shot=10, max_epochs=1, verbose=0, random_state=3,
                        train_split=TaskSplit(5)).fit(sinusoid_tasks)
    with pytest.warns(UserWarning, match="train_split"):
        est.save(tmp_path / "meta.skmeta")
    loaded = skmeta.load(tmp_path / "meta.skmeta")
    assert loaded.callbacks is None and loaded.train_split is None
    X, y = sinusoid_tasks[0]
    np.testing.assert_array_equal(loaded.adapt(X, y).predict(X), est.adapt(X, y).predict(X))
    assert len(loaded.history) == 1
    # continuing training reproduces continuing the pickled estimator (same rng, optimizer)
    pickled = pickle.loads(pickle.dumps(est)).set_params(train_split=None)
    pickled.partial_fit(sinusoid_tasks)
    loaded.partial_fit(sinusoid_tasks)
    for a, b in zip(pickled.module_.parameters(), loaded.module_.parameters()):
        assert torch.equal(a, b)


def test_load_refuses_pickled_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.skmeta"
    with open(path, "wb") as f:
        pickle.dump({"header": Evil()}, f)
    with pytest.raises(ValueError, match="not a skmeta model file"):
        skmeta.load(path)
    assert not marker.exists()
    torch.save({"header": json.dumps({"magic": "other"}), "tensors": {}}, path)
    with pytest.raises(ValueError, match="not a skmeta model file"):
        skmeta.load(path)


def _rewrite_header(path, version=FORMAT_VERSION, **changes):
    def edit(header):
        for key, value in changes.items():
            if key.startswith("attrs."):
                header["attrs"][key[6:]] = value
            elif key.startswith("params."):
                header["params"][key[7:]] = value
            else:
                header[key] = value

    rewrite(path, edit, version=version)


def test_load_refuses_unsafe_classes_and_newer_formats(sinusoid_tasks, tmp_path):
    est = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    path = tmp_path / "a.skmeta"
    est.adapt(*sinusoid_tasks[0]).save(path)
    _rewrite_header(path, **{"attrs.module_class_": {"__class__": "os:system"}})
    with pytest.raises(ValueError, match="not a torch.nn.Module"):
        skmeta.load(path)
    _rewrite_header(path, **{"attrs.module_class_": {"__class__": "someplugin.nets:Net"}})
    with pytest.raises(ValueError, match="trusted_modules"):
        skmeta.load(path)
    est.adapt(*sinusoid_tasks[0]).save(path)
    _rewrite_header(path, version=99, skmeta_version="9.0")
    with pytest.raises(ValueError, match="version 99 .written by skmeta 9.0.*Upgrade skmeta"):
        skmeta.load(path)
    est.adapt(*sinusoid_tasks[0]).save(path)
    _rewrite_header(path, **{"class": "Pipeline"})
    with pytest.raises(ValueError, match="Unknown model class"):
        skmeta.load(path)


def test_save_is_atomic(sinusoid_tasks, tmp_path, monkeypatch):
    est = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    adapted = est.adapt(*sinusoid_tasks[0])
    path = tmp_path / "model.skmeta"
    adapted.save(path)
    before = path.read_bytes()

    def crash(f, *args, **kwargs):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(_safetensors, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        adapted.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.skmeta"]


def test_save_explains_what_cannot_be_stored(sinusoid_tasks, tmp_path):
    est = MAMLRegressor(module=MLP(1, 1), k_shot=10, **FAST).fit(sinusoid_tasks)
    with pytest.raises(ValueError, match="instance"):
        est.adapt(*sinusoid_tasks[0]).save(tmp_path / "x")
    with pytest.raises(ValueError, match="module= a MLP instance"):
        est.save(tmp_path / "x")
    with pytest.raises(ValueError, match="fit first"):
        MAMLRegressor().save(tmp_path / "x")
    with pytest.raises(TypeError, match="skmeta.save"):
        skmeta.save(object(), tmp_path / "x")


def test_model_saved_from_cuda_loads_on_cpu(sinusoid_tasks, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("simulates a machine without CUDA")
    est = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    adapted = est.adapt(*sinusoid_tasks[0])
    for obj, name in ((est, "meta.skmeta"), (adapted, "adapted.skmeta")):
        obj.save(tmp_path / name)
    # rewrite the files as if they had been saved from a CUDA model
    _rewrite_header(tmp_path / "meta.skmeta", **{"params.device": "cuda:0"})
    _rewrite_header(tmp_path / "adapted.skmeta", **{"attrs.device_": "cuda"})
    from skorch.exceptions import DeviceWarning

    with pytest.warns(DeviceWarning, match="CPU"):
        meta = skmeta.load(tmp_path / "meta.skmeta")
    assert meta.device == "cpu"
    X, y = sinusoid_tasks[0]
    np.testing.assert_array_equal(meta.adapt(X, y).predict(X), adapted.predict(X))
    with pytest.warns(DeviceWarning, match="CPU"):
        loaded = skmeta.load(tmp_path / "adapted.skmeta")
    assert loaded.device_ == "cpu"
    np.testing.assert_array_equal(loaded.predict(X), adapted.predict(X))


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -0.5])
def test_load_checks_hyper_parameters_as_fit_does(sinusoid_tasks, tmp_path, value):
    est = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    est.save(tmp_path / "meta.skmeta")
    _rewrite_header(tmp_path / "meta.skmeta", **{"params.inner_lr": value})
    with pytest.raises(ValueError, match="stores invalid hyper-parameters: The 'inner_lr' "
                                         "parameter of MAMLRegressor must be a float"):
        skmeta.load(tmp_path / "meta.skmeta")
    est.adapt(*sinusoid_tasks[0]).save(tmp_path / "adapted.skmeta")
    _rewrite_header(tmp_path / "adapted.skmeta", **{"attrs.inner_lr_": value})
    with pytest.raises(ValueError, match="inner_lr_=.* is not a finite positive number"):
        skmeta.load(tmp_path / "adapted.skmeta")


def test_saving_into_a_missing_folder_names_the_target(sinusoid_tasks, tmp_path):
    adapted = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks).adapt(*sinusoid_tasks[0])
    target = tmp_path / "no" / "such" / "model.skmeta"
    with pytest.raises(FileNotFoundError, match=r"Cannot save to .*model\.skmeta'?: the folder "
                                                r".*such'? does not exist\. Create it first"):
        adapted.save(target)
    assert not (tmp_path / "no").exists()
