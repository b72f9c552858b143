import torch

import automl.trial.latency as latency_module
from automl.config import load_study_file
from automl.study.runner import prepare, run_search
from automl.trial.engine import Runtime
from automl.trial.latency import LatencyCache
from automl.trial_config import ModelSpec
from tests.conftest import TINY_SPACE


def test_latency_is_measured_once_per_model_and_persisted(tiny_study, runs_root, monkeypatch):
    calls = []
    real = latency_module.measure_latency_ms
    monkeypatch.setattr(latency_module, "measure_latency_ms", lambda *a, **k: calls.append(1) or real(*a, **k))
    space = dict(TINY_SPACE)
    space["model"] = {**space["model"], "architectures": ["Unet"], "aux_head": False}
    sf = load_study_file(tiny_study(space=space, **{"budget.n_trials": 3, "budget.trial_epochs": 1}),
                         runs_root=runs_root)
    study = run_search(prepare(sf))
    assert len(calls) == 1  # one model in the space: measured once, reused twice
    assert len({t.user_attrs["latency_ms"] for t in study.trials}) == 1
    assert (runs_root / "tiny" / "latency_cache.json").is_file()


def test_cache_key_changes_with_what_changes_latency(tmp_path):
    cache = LatencyCache(tmp_path / "c.json")
    rt = Runtime.resolve("cpu")
    spec = ModelSpec(arch="Unet", encoder="resnet18", encoder_depth=3)
    k1 = cache.key(spec, 5, (64, 64), rt)
    assert k1 != cache.key(spec, 5, (64, 96), rt)
    assert k1 != cache.key(spec.model_copy(update={"aux_head": True}), 5, (64, 64), rt)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        assert k1 != cache.key(spec, 5, (64, 64), rt)
    finally:
        torch.set_num_threads(threads)
    cache.put(k1, {"latency_ms": 1.0, "params_m": 2.0})
    assert LatencyCache(tmp_path / "c.json").get(k1) == {"latency_ms": 1.0, "params_m": 2.0}


def test_cpu_latency_uses_the_stated_threads_and_the_key_names_the_software(tmp_path, monkeypatch):
    from automl.trial.latency import measure_model

    seen = []
    monkeypatch.setattr(latency_module, "measure_latency_ms", lambda *a, **k: seen.append(torch.get_num_threads()) or 1.0)
    rt = Runtime.resolve("cpu")
    spec = ModelSpec(arch="Unet", encoder="resnet18", encoder_depth=3)
    cache = LatencyCache(tmp_path / "c.json", threads=1)
    before = torch.get_num_threads()
    key = cache.key(spec, 5, (64, 64), rt)
    measure_model(spec, 5, (64, 64), rt, cache)
    assert seen == [1] and torch.get_num_threads() == before  # measured at 1 thread, then put back
    try:
        torch.set_num_threads(2 if before == 1 else 1)
        assert cache.key(spec, 5, (64, 64), rt) == key  # the process's own thread count does not matter
    finally:
        torch.set_num_threads(before)
    # an upgrade of torch, SMP or timm, or a change to our model code, measures again
    for part in ("torch", "smp", "timm", "model"):
        assert f"|{part}" in key
    assert "(1 threads)" in key
