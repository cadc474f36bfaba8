"""The benchmarks' bookkeeping, on rows whose answers are known."""

import pytest

from benchmarks.common import majority
from benchmarks.cross_validated import sliced


def _rows(f1s):
    sources = ["kpop"] * 6 + ["celeba"] * 6
    return [
        {"identity": f"p{i // 3}", "source": source, "precision": 1.0, "recall": f1, "f1": f1}
        for i, (source, f1) in enumerate(zip(sources, f1s))
    ]


def test_pipelines_are_paired_key_by_key_and_sliced_by_source():
    mine = _rows([0.9] * 6 + [0.5] * 6)
    other = _rows([0.8] * 6 + [0.5] * 6)
    out = sliced(mine, other)
    counts = (out["east_asian"]["keys"], out["kpop"]["identities"], out["rest"]["keys"], out["all"]["keys"])
    assert counts == (6, 2, 6, 12)
    assert out["asian_faces"] == {"identities": 0, "keys": 0}  # a source with no keys here
    assert out["east_asian"]["f1_vs_other"] == pytest.approx(0.1)
    assert out["east_asian"]["f1_vs_other_interval"] == pytest.approx([0.1, 0.1])
    assert out["rest"]["f1_vs_other"] == 0.0 and out["all"]["f1_vs_other"] == pytest.approx(0.05)
    assert out["all"]["precision_vs_other"] == 0.0
    assert "f1_vs_other" not in sliced(mine)["all"]
    with pytest.raises(ValueError):
        sliced(mine, other[:-1])


def test_a_person_split_evenly_stands_for_the_identity_seen_first():
    """Not the hash seed's choice: the simulated owner's truth must not change from run to run."""
    assert majority(["ji-eun", "min-ho", "min-ho", "ji-eun"]) == "ji-eun"
    assert majority(["min-ho", "ji-eun", "ji-eun", "min-ho"]) == "min-ho"
    assert majority(["min-ho", "ji-eun", "ji-eun"]) == "ji-eun"
