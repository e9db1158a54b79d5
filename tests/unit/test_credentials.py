"""The CLI's key: LINEAGE_API_KEY wins, else a credentials file that only its owner may read."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from lineage.exceptions import ConfigError
from lineage.settings import Settings
from sinks.access.credentials import read_api_key, write_api_key


def test_written_0600_and_read_back(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert read_api_key(settings) is None
    write_api_key(settings.credentials_path, "lk_abc")
    assert (settings.credentials_path.stat().st_mode & 0o777) == 0o600
    assert read_api_key(settings) == "lk_abc"
    write_api_key(settings.credentials_path, "lk_new")  # replaced, still private
    assert read_api_key(settings) == "lk_new" and (settings.credentials_path.stat().st_mode & 0o777) == 0o600


def test_the_environment_wins_and_an_open_file_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    write_api_key(settings.credentials_path, "lk_file")
    assert read_api_key(Settings(data_dir=tmp_path, api_key=SecretStr("lk_env"))) == "lk_env"
    settings.credentials_path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_api_key(settings)
