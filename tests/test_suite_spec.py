from pathlib import Path

import pytest
import yaml

from sparsebench.errors import ConfigError
from sparsebench.suites.spec import builtin_suites, load_suite


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(builtin_suites()["retrieval"].read_text())
    mutate(data)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_builtin_retrieval_suite_loads() -> None:
    suite = load_suite("retrieval")
    assert suite.ref.startswith("retrieval@")
    assert suite.main_metric in suite.metrics and {"nDCG@10", "RR@10", "R@100"} <= set(suite.metrics)
    ids = [point for grid in suite.methods for point in grid.method_ids()]
    assert ("minilm", {}) in ids and len(ids) >= 2


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(metric=["nDCG@10"]), "unknown key 'metric'"),
        (lambda d: d["settings"].update(topk=10), "unknown key 'settings.topk'"),
        (lambda d: d["settings"].update(top_k="ten"), "settings.top_k: expected int"),
        (lambda d: d.update(version="one"), "version: expected int"),
        (lambda d: d.update(metrics=["nDCG@10", "ndcg@10"]), "metrics\\[1\\]"),
        (lambda d: d.update(metrics=["nDCG@10", "NotAMeasure@3"]), "not an ir-measures measure"),
        (lambda d: d.update(main_metric="P@5"), "main_metric"),
        (lambda d: d.update(cost_axes=["latency_p42_ms"]), "unknown axis 'latency_p42_ms'"),
        (lambda d: d["methods"].append({"method": "bm26"}), "did you mean bm25"),
        (lambda d: d["methods"].append({"method": "bm25", "sweep": {"k3": [1]}}), "no parameter 'k3'"),
        (lambda d: d.update(default_dataset="nope"), "default_dataset"),
        (lambda d: d["datasets"][0].pop("source"), "missing key 'datasets\\[0\\].source'"),
        (lambda d: d.update(task="ranking"), "unknown task 'ranking'"),
        (lambda d: d["grids"]["full"].append({"method": "int8(bm26)"}), "grids.full\\[\\d+\\]: .*did you mean bm25"),
        (lambda d: d["grids"].update({"a b": []}), "grids: 'a b' is not a grid name"),
        (lambda d: d["grids"].update(quick={"method": "bm25"}), "grids.quick: expected a list"),
    ],
)
def test_bad_suites_name_file_and_key(tmp_path: Path, mutate, message: str) -> None:
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError, match=message) as err:
        load_suite(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: retrieval\nversion: 1\nmetrics: [nDCG@10\nmain_metric: x\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: malformed YAML"):
        load_suite(str(path))


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_suite(str(path))
    assert not Path("pwned").exists()


def test_unknown_suite_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean retrieval"):
        load_suite("retreival")


def test_a_named_grid_runs_the_default_grid_and_then_its_own_points() -> None:
    from sparsebench.runner import plan_methods

    suite = load_suite("retrieval")
    default = plan_methods(suite, None, []).method_ids
    full = plan_methods(suite, None, [], "full").method_ids
    assert full[: len(default)] == default and len(full) > len(default)
    assert len(set(full)) == len(full)  # a default point repeated in the sweep is measured once
    # every compressor and engine has three or more points along its knob in the full grid
    for name in ("truncate", "pca", "binary", "pq", "opq", "csr", "bebr", "hnsw", "ivf"):
        assert sum(m.startswith(f"{name}(minilm") for m in full) >= 3, name
    with pytest.raises(ConfigError, match="no such grid; did you mean full\\? \\(named grids: full, late-interaction\\)"):
        plan_methods(suite, None, [], "fulll")
    # late interaction: exact MaxSim first (every other point's reference), three or more points each
    late = plan_methods(suite, None, [], "late-interaction").method_ids
    own = late[len(default):]
    assert own[0] == "maxsim(minilm)"
    for name in ("pool(maxsim(minilm)", "muvera(maxsim(minilm)"):
        assert sum(m.startswith(name) for m in own) >= 3, name
