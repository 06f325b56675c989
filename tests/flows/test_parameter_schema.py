"""The Prefect UI's run form: every parameter of every deployed flow has a description (and its limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema, parameter_schema_from_entrypoint

from flows.deploy import deployment_specs
from mnaft_core.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _undescribed(schema: dict[str, Any], where: str) -> list[str]:
    missing = [f"{where}.{n}" for n, p in schema.get("properties", {}).items() if not p.get("description")]
    for name, model in schema.get("definitions", {}).items():
        missing += [f"{name}.{n}" for n, p in model.get("properties", {}).items() if not p.get("description")]
    return missing


def test_every_deployed_parameter_and_config_field_is_described() -> None:
    cfg = load_config(ROOT / "configs/demo.yaml", {"reprofile.location": "s3://mnaft/store/finetune"})
    missing: list[str] = []
    schemas = {}
    for spec in deployment_specs(cfg):
        entrypoint = str(ROOT / spec.entrypoint)
        schema = parameter_schema(load_flow_from_entrypoint(entrypoint)).model_dump_for_openapi()
        missing += _undescribed(schema, spec.name)
        # what a worker or the UI computes from the source, without importing it
        static = parameter_schema_from_entrypoint(entrypoint).model_dump_for_openapi()
        missing += _undescribed(static, f"{spec.name} (from source)")
        schemas[spec.name] = schema
    assert not missing, f"parameters without a description in the UI's run form: {sorted(set(missing))}"
    evaluate = schemas["evaluate"]["definitions"]["EvaluateConfig"]["properties"]
    assert evaluate["max_samples_per_direction"]["minimum"] == 1  # constraints reach the form too
    assert evaluate["num_beams"]["maximum"] == 16
    assert "split the shards" in schemas["profile"]["properties"]["parts"]["description"]
