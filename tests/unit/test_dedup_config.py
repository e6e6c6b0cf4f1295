"""The dedup config: recipes load, bad values are refused with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mathforge.dedup.config import Config
from mathforge.runtime.config import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("recipe", ["tiny", "paper-7b"])
def test_recipe_loads(recipe):
    config = Config.from_mapping(yaml.safe_load((CONFIGS / recipe / "dedup.yaml").read_text()))
    assert (config.ngram_size, config.min_short_ngrams) == (10, 3)  # DeepSeekMath §2.1
    assert config.bands * config.rows == config.num_perm


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"bands": 10}, "bands x rows"),
        ({"threshold": 1.5}, "threshold"),
        ({"store": "memcached"}, "store"),
        ({"min_short_ngrams": 11}, "min_short_ngrams"),
        ({"unicode_form": "NFX"}, "unicode_form"),
        ({"max_items": 0}, "max_items"),
    ],
)
def test_bad_values_are_refused_naming_the_field(values, needle):
    with pytest.raises(ConfigError, match=needle):
        Config.from_mapping(values)


def test_environment_and_flags_override_the_file(tmp_path):
    path = tmp_path / "dedup.yaml"
    path.write_text("threshold: 0.7\nstore_path: /tmp/a\n")
    config = Config.from_args(
        ["--config", str(path), "--store-path", "/tmp/b"], env={"MATHFORGE_THRESHOLD": "0.9"}
    )
    assert (config.threshold, config.store_path) == (0.9, "/tmp/b")
