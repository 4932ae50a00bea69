"""`tianluo train` defaults on data nobody here wrote: AMLSim's shipped 10K parameter set (seed 7).

The model owner's question is whether a result survives a change of seed: a model whose test
F1 moves by 0.1 when only the random seed changes cannot be trusted on the next bank's data
either. Two seeds, the full default protocol (grid on validation, three averaged members,
Platt calibration, smoothed-F1 threshold, settled 1-day graph features), the same split.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tianluo.detect.registry import ModelRegistry, evaluate_on_dataset, train_on_dataset
from tianluo.ingest import ingest, open_reader
from tianluo.store.dataset import Dataset

from .conftest import TEST_KEY, shared

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def amlsim10k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = shared("amlsim-10k")
    ds = Dataset(tmp_path_factory.mktemp("amlsim10k") / "dataset", create=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIANLUO_MASTER_KEY", TEST_KEY)
        ingest(open_reader(src), ds)
    return ds.root


def test_a_seed_change_moves_test_f1_by_less_than_003(amlsim10k: Path) -> None:
    figures = []
    for seed in (0, 1):
        model, _ = train_on_dataset(amlsim10k, f"seed{seed}", seed=seed, horizon="1d")
        figures.append(model.metrics["test"])
    f1 = [m["f1"] for m in figures]
    pr_auc = [m["pr_auc"] for m in figures]
    print(f"\nAMLSim 10K test F1 {f1}, PR-AUC {pr_auc}")
    assert abs(f1[0] - f1[1]) < 0.03
    assert abs(pr_auc[0] - pr_auc[1]) < 0.03
    # Not only stable but useful: the old defaults gave 0.87 here, a plain script on Snap ML's features 0.94.
    assert min(f1) >= 0.9 and min(pr_auc) >= 0.9


def test_evaluate_reports_intervals_and_no_drift_on_its_own_test_period(amlsim10k: Path) -> None:
    meta = ModelRegistry.for_dataset(amlsim10k).meta("seed0")
    assert meta["members"] == 3 and meta["calibration"] is not None
    report = evaluate_on_dataset(amlsim10k, "seed0")
    assert report["f1"] == pytest.approx(meta["metrics"]["test"]["f1"])
    lo, hi = report["intervals"]["f1"]
    assert lo <= report["f1"] <= hi and hi - lo < 0.25
    assert report["drift"]["training_illicit_rate"] > 0
    # The last fifth of the same simulation is the same population: no illicit-rate warning.
    assert not any("illicit rate" in w for w in report["drift"]["warnings"])
