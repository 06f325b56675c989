from __future__ import annotations

from pathlib import Path

import pytest

from mnaft_core._base import StrictModel
from mnaft_core.config import ConfigError, PipelineConfig, load_config, load_model
from mnaft_core.organism.config import BootstrapConfig

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """
data:
  directions: [{src: en, tgt: de}]
  sources: [{kind: cldr}]
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_validate(name: str) -> None:
    if name.startswith("organism"):  # `mnaft bootstrap`'s files (v1, v2), not pipeline configs
        cfg: StrictModel = load_model(ROOT / "configs" / name, BootstrapConfig)
    elif name.startswith("claim"):  # `mnaft claim`'s files: a pipeline config inside the claim's own
        from mnaft_core.claim import ClaimConfig

        cfg = load_model(ROOT / "configs" / name, ClaimConfig).pipeline
    else:
        cfg = load_config(ROOT / "configs" / name)
        assert isinstance(cfg, PipelineConfig)
    assert cfg.data.directions  # type: ignore[attr-defined]


def test_minimal_config_fills_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL))
    assert cfg.store == "./mnaft-store"
    assert cfg.model.name_or_path == "embedded:organism"
    assert cfg.model.trust_remote_code is False
    assert cfg.data.languages == ["en", "de"]


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL + "  split:\n    val_fractoin: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value)
    assert "data.split.val_fractoin: unknown key" in str(e.value)


def test_wrong_type_names_key(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL + "  seed: not-a-number\n")
    with pytest.raises(ConfigError, match=r"data\.seed: .*integer.*got 'not-a-number'"):
        load_config(p)


def test_out_of_range_names_key(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL + "  render:\n    height: 2\n")
    with pytest.raises(
        ConfigError, match=r"data\.render\.height: Input should be greater than or equal to 8"
    ):
        load_config(p)


def test_bad_source_kind_and_missing_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.sources\.0"):
        load_config(_write(tmp_path, "data:\n  directions: [{src: en, tgt: de}]\n  sources: [{kind: ftp}]\n"))
    with pytest.raises(ConfigError, match=r"data: Field required"):
        load_config(_write(tmp_path, "store: ./x\n"))


def test_same_language_direction_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"en->en: source and target must differ"):
        load_config(
            _write(tmp_path, "data:\n  directions: [{src: en, tgt: en}]\n  sources: [{kind: cldr}]\n")
        )


def test_not_yaml_and_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_overrides(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL), overrides={"data.seed": 7, "store": "memory://x"})
    assert cfg.data.seed == 7 and cfg.store == "memory://x"


def test_fingerprint_is_stable_and_sensitive(tmp_path: Path) -> None:
    a = load_config(_write(tmp_path, MINIMAL))
    b = load_config(_write(tmp_path, MINIMAL))
    assert a.fingerprint() == b.fingerprint()
    assert a.data.fingerprint() != load_config(tmp_path / "cfg.yaml", {"data.seed": 1}).data.fingerprint()
