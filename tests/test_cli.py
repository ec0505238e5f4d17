from __future__ import annotations

import subprocess
import sys


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
