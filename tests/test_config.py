"""Config files as a user writes them: every mistake is one sentence, nothing is ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from vtmon.config import ConfigError, load_config


def _load(tmp_path: Path, text: str):
    f = tmp_path / "config.toml"
    f.write_text(text)
    return load_config(f)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # a misspelt section would otherwise be ignored without a word
        ("[defualts]\ndefault_target_ms = 50\n", "'defualts' is not a section"),
        # a setting outside its section: say where it belongs
        ("max_series = 5\n", "'max_series' is not a section; it belongs in [limits]"),
        ("[defaults]\ntarget_ms = 50\n", "[defaults] has no setting 'target_ms'"),
        ("[components.api]\ntarget = 50\n", "[components.api] has no setting 'target'"),
        ("[limits]\nmax_sries = 5\n", "[limits] has no setting 'max_sries'"),
        ("[server]\nmode = 0o600\n", "[server] has no setting 'mode'"),
    ],
)
def test_unknown_sections_and_keys_are_errors(tmp_path, text, says):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # TOML reads 1e400 as infinity: a target no latency can reach is no target
        ("[defaults]\ndefault_target_ms = 1e400\n", "defaults.default_target_ms must be a number"),
        ("[components.api]\ntarget_ms = nan\n", "components.api.target_ms must be a number"),
        ("[limits]\nmax_line_bytes = 10\n", "limits.max_line_bytes must be a whole number at"),
        ("[limits]\nmax_line_bytes = 100000000000\n", "at most 8,388,608"),
        ("[limits]\nmax_connections = 0\n", "limits.max_connections must be"),
        ("[limits]\nmax_series = 2.5\n", "limits.max_series must be a whole number"),
        ("[components.api]\nerror_rate = 2\n", "error_rate must be a number above 0 and at most 1"),
        (
            "[detector]\ncpu_high = 150\n",
            "detector.cpu_high must be a number above 0 and at most 100",
        ),
        ("[retention]\napplication_days = 1e9\n", "retention.application_days must be"),
        ("[retention]\nmax_size_mb = 0.5\n", "retention.max_size_mb must be a number at least 1"),
        ("[server]\nsocket_mode = 0o777\n", "server.socket_mode must be a mode such as"),
        ("[server]\nsocket_mode = 0o066\n", "not 0o66"),
        ('[server]\nsocket_mode = "0690"\n', "server.socket_mode must be a mode such as"),
        ("[server]\nsocket_group = true\n", "server.socket_group must be a group name or a gid"),
    ],
)
def test_numbers_are_range_checked(tmp_path, text, says):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    msg = str(e.value)
    assert says in msg
    assert msg.endswith(".") and "\n" not in msg


def test_limits_and_server_settings_are_read(tmp_path):
    cfg = _load(
        tmp_path,
        "[limits]\nmax_connections = 20\nframe_timeout_s = 2.5\nmax_line_bytes = 4096\n"
        '[server]\nsocket_mode = "0660"\nsocket_group = "app"\n'
        "[retention]\nmax_size_mb = 100\n",
    )
    assert cfg.max_connections == 20 and isinstance(cfg.max_connections, int)
    assert cfg.frame_timeout_s == 2.5
    assert cfg.max_line_bytes == 4096
    assert cfg.server.socket_mode == 0o660 and cfg.server.socket_group == "app"
    assert cfg.retention.max_size_mb == 100
    defaults = _load(tmp_path, "")
    assert defaults.server.socket_mode == 0o600 and defaults.max_connections == 1000
    assert defaults.retention.max_size_mb is None
