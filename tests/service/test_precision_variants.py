"""Precision variants served side by side (``contract.precision``): each under its own name, its
metadata saying its precision and provider; int8 answers as its own file does in-process; fp16
refuses the CPU with what to do, while the others serve.

Shapes: ``F`` = 5 features, ``C`` = 3 classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contract.precision import FP16, FP32, INT8, variant_name
from export.exporter import export_model
from export.verify import VerifySettings
from models.architectures import LSTMClassifier, LSTMClassifierConfig
from tests.support.ort_reference import Reference
from tests.support.service_app import app_client
from tests.support.tiny_repository import FEATURES, LABELS, tiny_settings

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny``, ``tiny_int8`` and ``tiny_fp16`` of one random-weight model."""
    repo = tmp_path_factory.mktemp("variants")
    torch.manual_seed(0)
    model = LSTMClassifier(LSTMClassifierConfig(FEATURES, (8, 12), len(LABELS), labels=LABELS))
    fast = VerifySettings(max_length=24, batch_size=6, num_batches=2)
    for precision in (FP32, INT8, FP16):
        export_model(
            model, repo, variant_name("tiny", precision), 1, verify=fast, precision=precision
        )
    return repo


async def test_variants_are_served_by_name_with_their_precision_and_provider(
    variants: Path,
) -> None:
    rng = np.random.default_rng(0)
    sequences = [rng.standard_normal((n, FEATURES)).astype(np.float32) for n in (3, 11, 6)]
    reference = Reference(variants, ["tiny", "tiny_int8"])
    async with app_client(tiny_settings(variants)) as http:
        for name, precision in (("tiny", FP32), ("tiny_int8", INT8)):
            metadata = (await http.get(f"/v2/models/{name}")).json()["parameters"]
            assert (metadata["precision"], metadata["provider"]) == (
                precision,
                "CPUExecutionProvider",
            )
            summary = (await http.get(f"/v1/models/{name}")).json()
            assert summary["precision"] == precision and summary["ready"]
            body = {"sequences": [s.tolist() for s in sequences], "return": ["probabilities"]}
            answer = await http.post(f"/v1/models/{name}/predict", json=body)
            assert answer.status_code == 200, answer.text
            for sequence, result in zip(sequences, answer.json()["results"], strict=True):
                # int8's input scale is the batch's: alone and batched differ a little, within
                # the limit its export was checked to (export.verify_variant).
                expected = reference.run(name, sequence)["probs"]
                tolerance = 1e-5 if precision == FP32 else 0.1
                np.testing.assert_allclose(result["probabilities"], expected, atol=tolerance)
        ready = await http.get("/v2/health/ready")
        assert ready.status_code == 503
        error = ready.json()["models_down"]["tiny_fp16/1"]
        assert "fp16 variant, served on CUDA only" in error and "--provider cuda" in error
