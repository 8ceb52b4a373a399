"""``bench.precision``: the precision case run end to end on a repository holding a tiny model
and its int8 variant (F = 5: no test accuracy), its record as JSON and the table as markdown."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.load import LoadPlan
from bench.precision import measure_precisions
from bench.records import PrecisionCase, PrecisionRow, to_json
from bench.report import precisions_markdown
from export.exporter import export_model
from export.verify import VerifySettings
from loadtest.distributions import parse_int_distribution
from models.architectures import LSTMClassifier, LSTMClassifierConfig

FLAGS = ["--warmup-batch-sizes", "[1]", "--warmup-lengths", "[4]"]


def test_the_table_puts_speed_and_accuracy_side_by_side() -> None:
    cpu = "CPUExecutionProvider"
    rows = [
        PrecisionRow("fp32", "m", cpu, 0.973, {"16 sorted": 1000.0}, 800.0, 9.5),
        PrecisionRow("int8", "m_int8", cpu, 0.97, {"16 sorted": 1800.0}, 1400.0, 6.0),
    ]
    text = "\n".join(precisions_markdown(PrecisionCase("v2-binary", 64, 2, rows, 400.0)))
    assert "| fp32 | `m` | CPU | 97.30% | 1,000 | 800 | 9.5 | 2.00x |" in text
    assert "| int8 | `m_int8` | CPU | 97.00% | 1,800 (1.80x) | 1,400 | 6.0 | 3.50x |" in text
    assert to_json(rows[1])["in_process_seq_per_s"] == {"16 sorted": 1800.0}


@pytest.fixture(scope="module")
def variant_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("precision_repository")
    torch.manual_seed(0)
    model = LSTMClassifier(LSTMClassifierConfig(5, (8,), 3))
    fast = VerifySettings(max_length=24, batch_size=6, num_batches=2)
    export_model(model, repo, "m", 1, verify=fast)
    export_model(model, repo, "m_int8", 1, verify=fast, precision="int8")
    return repo


def test_the_case_measures_each_variant_in_process_and_served(variant_repository: Path) -> None:
    plan = LoadPlan(
        model="m", protocols=("v2-binary",), concurrency=(1, 4),
        lengths=parse_int_distribution("3:12"), seconds=0.5, warmup_s=0.1, server_warmup_s=0.0,
        pool=16, seed=0, processes=1, verify=2,
    )  # fmt: skip
    case = measure_precisions(
        variant_repository, plan, ["fp32", "int8", "fp16"], 5, batch_sizes=[1, 4], sample=16,
        low=3, high=12, seconds=0.1, parallel=1, service_flags=FLAGS, provider="cpu",
    )  # fmt: skip
    assert [(r.precision, r.model) for r in case.rows] == [("fp32", "m"), ("int8", "m_int8")]
    assert case.concurrency == 4  # the run's highest; fp16 is not in the repository: left out
    for row in case.rows:
        assert list(row.in_process_seq_per_s) == ["1 arrival", "1 sorted", "4 arrival", "4 sorted"]
        assert all(rate > 0 for rate in row.in_process_seq_per_s.values())
        assert row.service_seq_per_s is not None and row.service_seq_per_s > 0
        assert row.test_accuracy is None  # not JapaneseVowels' shape
        assert row.provider == "CPUExecutionProvider"
