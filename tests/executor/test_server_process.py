"""executor.server_process.ServerProcess: extra command-line arguments reach ``ecc serve`` and its log is kept."""

from __future__ import annotations

import pytest

from executor.server_process import ServerProcess


def test_extra_args_reach_the_server_and_stderr_is_kept(tmp_path):
    log = tmp_path / "serve.log"
    server = ServerProcess("openvla", "tiny", extra_args=["--no-such-option"], stderr_path=log, start_timeout_s=60)
    with pytest.raises(RuntimeError, match="did not report ready"):
        server.start()
    assert not server.alive
    assert "no-such-option" in log.read_text()


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="port"):
        ServerProcess("openvla", "tiny", port=70000)
    assert not ServerProcess("openvla", "tiny").alive
