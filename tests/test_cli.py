from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def test_demo_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nbdeploy.cli", "demo"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("parity\n    ok vs") == 2
    assert "exported digits-cnn" in out and "exported digits-sklearn" in out
    accuracies = [float(line.split()[0]) for line in out.splitlines() if " on 450 images" in line]
    assert len(accuracies) == 2 and min(accuracies) > 0.9
    assert "serving on the local server" in out and "version 1 answered" in out


@pytest.mark.slow
def test_serve_command_runs_until_terminated(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "nbdeploy.cli", "serve", str(tmp_path),
               "--http-port", "0", "--grpc-port", "0"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        state_file = tmp_path / "server.json"
        deadline = time.monotonic() + 60
        while not state_file.exists() and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.05)
        state = json.loads(state_file.read_text())
        with urllib.request.urlopen(state["http_url"] + "/v2/health/ready") as response:
            assert response.status == 200
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0].decode()
    assert server.returncode == 0, output
    assert not state_file.exists()  # a clean stop leaves no state behind


def test_serve_command_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nbdeploy.cli", "serve", str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True, text=True, check=False, env={"PATH": "/usr/bin"},
    )  # fmt: skip
    assert done.returncode == 1 and "without a token" in done.stderr
