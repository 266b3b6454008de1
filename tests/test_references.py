"""The published figures are extracted at the asked steps, from both sources' formats."""

import importlib.util
import pathlib

import pytest

from sb3_ddpg_ext.experiments.references import published_counterpart, read_references

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "extract_references.py"


@pytest.fixture(scope="module")
def extract():
    spec = importlib.util.spec_from_file_location("extract_references", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_evaluation_nearest_the_step_counts_only_within_the_tolerance(extract):
    points = {16_666: 1.0, 49_998: 2.0, 66_664: 3.0, 99_996: 4.0}
    assert extract.nearest(points, 50_000) == (49_998, 2.0) and extract.nearest(points, 100_000) == (99_996, 4.0)
    assert extract.nearest({40_000: 1.0}, 50_000) is None and extract.nearest({}, 50_000) is None


def test_both_formats_are_read_per_seed(extract, tmp_path):
    simba = tmp_path / "SimbaV2" / "results" / "baseline"
    simba.mkdir(parents=True)
    header = ",exp_name,env_name,seed,metric,env_step,value\n"
    (simba / "sac.csv").write_text(header + "0,sac,Hopper-v4,3,avg_return,49998.0,10.5\n1,sac,dog-run,3,avg_return,50000,9\n")
    for name in ("crossq", "simbaV2_utd2"):
        (simba / f"{name}.csv").write_text(header)
    rows = extract.simbav2_rows(tmp_path / "SimbaV2", "abcdef0123")
    assert rows == [["SAC", "Hopper-v4", "3", 50_000, 49_998, 10.5, "dojeon-ai/SimbaV2@abcdef0:results/baseline/sac.csv"]]
    mrq = tmp_path / "MRQ" / "results"
    mrq.mkdir(parents=True)
    (mrq / "gym_results.txt").write_text("Env: Gym-Ant-v4\nTimestep\tSeed 0\t\tSeed 1\n0\t\t1.0\t2.0\n50000\t\t3.5\t4.5\n")
    assert [row[2:6] for row in extract.mrq_rows(tmp_path / "MRQ", "1234567")] == [
        ["0", 50_000, 50_000, 3.5],
        ["1", 50_000, 50_000, 4.5],
    ]


def test_the_committed_figures_cover_the_four_locomotion_tasks_at_both_steps():
    references = read_references()
    assert published_counterpart("Walker2d-v5") == "Walker2d-v4"
    for env_id in ("HalfCheetah-v4", "Hopper-v4", "Walker2d-v4", "Ant-v4"):
        assert set(references[env_id]) == {"SAC", "CrossQ", "SimbaV2 (UTD 2)", "MR.Q"}
        assert all(len(by_step[100_000]) == 10 for by_step in references[env_id].values())
