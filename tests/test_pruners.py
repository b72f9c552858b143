"""The pruner registry: every name the study file accepts builds a pruner and states its epochs."""

from __future__ import annotations

import optuna
import pytest

from automl.config import PrunerSection
from automl.errors import ConfigError
from automl.pruners import PRUNERS


@pytest.mark.parametrize("name", list(PRUNERS))
def test_each_registered_pruner_builds_and_reads_the_last_epoch(name):
    section = PrunerSection(type=name, min_resource=1, reduction_factor=2)
    assert isinstance(PRUNERS[name].build(section, 8), optuna.pruners.BasePruner)
    reads = PRUNERS[name].reads(section, 8)
    assert reads is None or (8 in reads and reads <= set(range(1, 9)))


def test_rung_pruners_read_their_rungs():
    section = PrunerSection(type="successive_halving", min_resource=2, reduction_factor=2)
    assert PRUNERS["successive_halving"].reads(section, 10) == {2, 4, 8, 10}


def test_an_unknown_pruner_is_refused_naming_the_valid_ones(tiny_study, runs_root):
    from automl.config import load_study_file

    path = tiny_study(pruner={"type": "asha"})
    with pytest.raises(ConfigError) as err:
        load_study_file(path, runs_root=runs_root)
    assert "pruner.type" in str(err.value)
    assert all(name in str(err.value) for name in PRUNERS)
