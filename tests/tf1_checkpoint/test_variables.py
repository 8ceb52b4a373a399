"""``tf1_checkpoint.variables``: a checkpoint's variables listed by role (model, optimizer slot,
step), and the listing ``--list-variables`` prints."""

from __future__ import annotations

from tests.support.tf1_shipped import load_manifest, model_dir
from tf1_checkpoint import TFCheckpoint, format_variables, list_variables


def test_list_variables_marks_training_leftovers(model_name: str) -> None:
    manifest = load_manifest(model_name)
    infos = list_variables(TFCheckpoint(model_dir(model_name)))
    roles = {info.name: info.role for info in infos}
    assert sorted(n for n, r in roles.items() if r == "model") == manifest["model_variables"]
    assert roles["global_step"] == "step"
    assert roles["beta1_power"] == roles["beta2_power"] == roles["softmax/W/Adam_1"] == "optimizer"
    text = format_variables(infos)
    assert "softmax/W " in text and "/Adam" not in text and "optimizer/step variables" in text
    assert "softmax/W/Adam_1" in format_variables(infos, include_all=True)
