"""Comparison rows with controlled numbers: measurements as data, for the choice, the
reports and the plot (no timing involved)."""

from __future__ import annotations

from nbdeploy.bench.results import Comparison
from nbdeploy.bench.rows import ComparisonRow


def timed(
    variant: str,
    p50: float,
    noise: float = 0.0,
    *,
    accuracy: float | None = 97.0,
    size: int = 100_000,
    batch: int = 1,
    provider: str = "cpu",
    **more: object,
) -> ComparisonRow:
    """A measured row: median ``p50`` ms with a 95 % interval of ``p50 ± noise``."""
    values: dict[str, object] = {
        "variant": variant, "provider": provider, "batch_size": batch,
        "metric_name": "accuracy", "metric": accuracy, "top1_agreement": 100.0,
        "max_abs_diff": 0.0, "p50_ms": p50, "p50_low_ms": p50 - noise,
        "p50_high_ms": p50 + noise, "stable": True, "p95_ms": p50 * 1.2,
        "p99_ms": p50 * 1.5, "throughput": batch * 1000 / p50, "size_bytes": size,
        "memory_mb": 12.5, "note": "",
    }  # fmt: skip
    return ComparisonRow(**(values | more))


def skipped(variant: str, provider: str = "cuda", batch: int = 1) -> ComparisonRow:
    return ComparisonRow(variant=variant, provider=provider, batch_size=batch,
                         metric_name="accuracy",
                         skipped=f"{provider} is not in this onnxruntime build")  # fmt: skip


def comparison(*rows: ComparisonRow, higher_is_better: bool = True) -> Comparison:
    metric = next((r.metric_name for r in rows), "accuracy")
    return Comparison(list(rows), metric, higher_is_better)
