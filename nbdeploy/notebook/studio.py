"""``nbd.studio``: an ipywidgets panel to explore optimization and quantization without
writing a loop — pick passes, schemes and providers, Run (a live table, then the Pareto
plot), look at any variant's graph, its diff and where its answers drift from the
original's (the activation report, table and plot), Deploy the one you choose.

Run works in a background thread so the notebook stays responsive: the Run button is
disabled meanwhile and Cancel stops the run before its next step or measurement, keeping
the rows measured so far (marked partial). Everything a button does is a method too
(``.run()``, ``.start()``, ``.cancel()``, ``.deploy()``), so scripts and tests drive the
same code headless.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
from collections.abc import Callable
from typing import Any

from .. import _html
from ..artifact import Artifact
from ..bench import report
from ..bench.metrics import resolve
from ..bench.results import Comparison
from ..bench.rows import ComparisonRow
from ..errors import ConfigError, NbDeployError
from ..quantization.schemes import CHOICES

log = logging.getLogger(__name__)

__all__ = ["Studio", "studio"]

SCHEMES = list(CHOICES)
PROVIDERS = ["cpu", "cuda", "tensorrt"]


def studio(
    model_or_artifact: Any,
    *,
    example: Any = None,
    data: Any = None,
    metric: str = "accuracy",
    calibration: Any = None,
    name: str | None = None,
) -> Studio:
    """An interactive panel over one model: optimize, quantize, compare, deploy.

    Args:
        model_or_artifact: An :class:`Artifact`, or a model :func:`nbd.export` accepts
            (then the model itself is measured too, as the table's first row).
        example: Example input (needed to export a model).
        data: ``(X, y)`` to score ``metric`` on (or ``X``: agreement and latency only).
        metric: As in :func:`nbd.compare`.
        calibration: Inputs for ``int8-static`` (default: the first 128 rows of ``X``).
        name: Model name (default: the artifact's).
    """
    if isinstance(model_or_artifact, Artifact):
        return Studio(model_or_artifact, data=data, metric=metric, calibration=calibration)
    from ..exporters import export

    if example is None:
        raise ConfigError("studio needs example= to export a model (or pass an Artifact)")
    art = export(model_or_artifact, example, name=name or "model")
    return Studio(art, data=data, metric=metric, calibration=calibration,
                  source=model_or_artifact)  # fmt: skip


class Studio:
    """The panel; ``.widget`` is what a notebook shows, ``.comparison`` the last result.

    Attributes:
        original: The artifact everything derives from.
        variants: Artifacts made by the last run, by their label in the table.
        comparison: The last :class:`Comparison`, or ``None`` before a run.
        deployed: What the last deploy returned (a Deployment or a PushResult).
    """

    def __init__(
        self, art: Artifact, *, data: Any, metric: str, calibration: Any, source: Any = None
    ) -> None:
        import ipywidgets as w

        from ..bench.providers import unavailable_reason
        from ..graph.optimize import PASSES

        self.original = art
        self.source = source  # the model art was exported from, measured as a row too
        self.data, self.metric = data, metric
        self.calibration = calibration if calibration is not None else _calibration(data)
        self.variants: dict[str, Artifact] = {}
        self.comparison: Comparison | None = None
        self._shown: Any = None  # the display handle, once shown
        self._plot_png = ""  # the last run's plot, base64
        self.deployed: Any = None
        self.passes = w.SelectMultiple(options=list(PASSES), value=list(PASSES),
                                       description="passes", rows=min(8, len(PASSES)))  # fmt: skip
        self.schemes = w.SelectMultiple(options=SCHEMES, value=["int8-dynamic", "fp16"],
                                        description="schemes", rows=len(SCHEMES))  # fmt: skip
        available = [p for p in PROVIDERS if unavailable_reason(p) is None]
        self.providers = w.SelectMultiple(options=PROVIDERS, value=available,
                                          description="providers", rows=len(PROVIDERS))  # fmt: skip
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.progress = w.IntProgress(min=0, max=1, description="", bar_style="info")
        self.table = w.HTML()
        self.plot = w.Output()
        self.chosen = w.Dropdown(options=[], description="variant")
        self.graph = w.Output()
        self.target = w.Text(placeholder="empty: local server · host:port · folder",
                             description="deploy to")  # fmt: skip
        self.deploy_button = w.Button(description="Deploy", icon="rocket", disabled=True)
        self.status = w.HTML()
        self.run_button.on_click(lambda _: self.start())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.deploy_button.on_click(lambda _: self._guarded(self.deploy))
        self.chosen.observe(lambda change: self._show_variant(change["new"]), names="value")
        self.widget = w.VBox([
            w.HBox([self.passes, self.schemes, self.providers]),
            w.HBox([self.run_button, self.cancel_button, self.progress]), self.table, self.plot,
            w.HBox([self.chosen]), self.graph,
            w.HBox([self.target, self.deploy_button]), self.status,
        ])  # fmt: skip

    # -- actions ---------------------------------------------------------------------------

    def run(self) -> Comparison:
        """Optimize with the chosen passes, quantize with each chosen scheme, compare on
        each chosen provider; the table fills as rows arrive. :meth:`cancel` stops before
        the next step or measurement; what was measured stays, marked partial."""
        self._cancel.clear()
        self._busy(True)
        try:
            return self._run()
        finally:
            self._busy(False)

    def start(self) -> threading.Thread:
        """:meth:`run` in a background thread (the Run button); errors show in the panel.
        While a run is going, returns that run's thread instead of starting another."""
        if self._thread is None or not self._thread.is_alive():
            self._busy(True)  # now, not when the thread gets going: no double start
            self._thread = threading.Thread(target=self._guarded, args=(self.run,), daemon=True)
            self._thread.start()
        return self._thread

    def cancel(self) -> None:
        """Stop the current run before its next step or measurement (the Cancel button)."""
        self._cancel.set()
        self.cancel_button.disabled = True
        self._say("cancelling after the current measurement…")

    def wait(self, timeout: float | None = None) -> Comparison | None:
        """Wait for a run that :meth:`start` began; returns :attr:`comparison`."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.comparison

    def _run(self) -> Comparison:
        from ..bench.compare import compare
        from ..graph.optimize import optimize
        from ..quantization import quantize

        providers, schemes = list(self.providers.value), self.schemes.value
        live = resolve(self.metric)
        due = (2 + len(schemes) + (self.source is not None)) * len(providers)
        self.progress.max, self.progress.value = 1 + len(schemes) + due, 0
        self._say("optimizing")
        made = [self.original, optimize(self.original, list(self.passes.value), progress=False)]
        for scheme in schemes:
            if self._cancel.is_set():
                return self._finish(Comparison([], live.name, live.higher_is_better, partial=True))
            self.progress.value += 1
            self._say(f"quantizing: {scheme}")
            made.append(quantize(made[1], scheme, calibration=self.calibration, progress=False))
        rows: list[ComparisonRow] = []

        def arrived(row: ComparisonRow) -> None:
            rows.append(row)
            self.progress.value += 1
            title = f"comparing… {len(rows)} of {due} rows"
            table = Comparison(rows, live.name, live.higher_is_better)
            self.table.value = report.html(table, title=title, choose=False)

        self._say("comparing")
        measured = made if self.source is None else [self.source, *made]
        return self._finish(compare(measured, data=self.data, metric=self.metric,
                                    providers=providers, progress=False, on_row=arrived,
                                    cancel=self._cancel))  # fmt: skip

    def _finish(self, comparison: Comparison) -> Comparison:
        """Show a finished (or cancelled) comparison: table, plot, the chosen variant."""
        self.comparison, self.progress.value = comparison, self.progress.max
        self.table.value = comparison._repr_html_()
        self.variants = {row.variant: comparison.artifact(row)
                         for row in comparison.measured if not row.source}  # fmt: skip
        choice = comparison.choice()
        self.chosen.options = list(self.variants)
        self.chosen.value = choice.variant if choice else next(iter(self.variants), None)
        if self.variants:
            self._draw_plot()
        why = f"chosen: {choice.reason}" if choice else "no variant qualifies"
        count = len(comparison.measured)
        done = f"{count} row{'' if count == 1 else 's'} measured; {why}"
        self._say(f"cancelled, partial: {done}" if comparison.partial else f"done: {done}")
        if self._shown is not None:  # the saved notebook's picture follows the run
            self._shown.update(self._bundle(), raw=True)
        return comparison

    def _busy(self, running: bool) -> None:
        self.run_button.disabled = running
        self.cancel_button.disabled = not running
        self.deploy_button.disabled = running or not self.variants

    def deploy(self, variant: str | None = None) -> Any:
        """Serve the chosen variant locally, or push it to the target in the text box."""
        label = variant or self.chosen.value
        if label not in self.variants:
            raise ConfigError(f"run first, then choose a variant; known: {sorted(self.variants)}")
        from ..targets import deploy

        local = not self.target.value.strip()
        self.deployed = deploy(self.variants[label], self.target.value.strip() or None,
                               name=self.original.name,
                               report=self.comparison if local else None)  # fmt: skip
        self._say(f"deployed {label}: {self.deployed}")
        return self.deployed

    # -- display -----------------------------------------------------------------------------

    def _guarded(self, action: Callable[[], object]) -> None:
        """Buttons (and the run's thread, which has no caller to raise to) report errors in
        the panel instead of losing them in a log."""
        try:
            action()
        except Exception as err:
            if not isinstance(err, NbDeployError):
                log.exception("studio: %s failed", getattr(action, "__name__", action))
            self._say(f"error: {err}", ok=False)

    def _say(self, text: str, ok: bool = True) -> None:
        self.status.value = _html.card("", str(_html.verdict(ok, text)))

    def _draw_plot(self) -> None:
        assert self.comparison is not None
        self._plot_png = _png(self.comparison.plot())
        self.plot.outputs = ()
        _append(self.plot, {"image/png": self._plot_png,
                            "text/plain": "accuracy vs latency (Pareto)"})  # fmt: skip

    def _show_variant(self, label: str | None) -> None:
        from ..graph.diff import diff
        from ..graph.show import show

        self.graph.outputs = ()
        if not label or label not in self.variants:
            return
        _append(self.graph, _bundle(show(self.variants[label])))
        _append(self.graph, _bundle(diff(self.original, self.variants[label])))
        drift = self.comparison.drifts.get(label) if self.comparison is not None else None
        if drift is not None:  # where its answers drift from the original's
            _append(self.graph, _bundle(drift))
            _append(self.graph, {"image/png": _png(drift.plot()),
                                 "text/plain": f"SQNR along {label}"})  # fmt: skip

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._shown = display(self._bundle(), raw=True, display_id=True)

    def _bundle(self) -> dict[str, Any]:
        """The live panel, and a static picture of it for where widgets do not run (GitHub,
        nbviewer, a notebook opened without its widget state): the status, the table and
        the plot of the last run."""
        bundle: dict[str, Any] = dict(self.widget._repr_mimebundle_())
        parts = [self.status.value, self.table.value]
        if self._plot_png:
            parts.append(f'<img src="data:image/png;base64,{self._plot_png}" '
                         'alt="accuracy vs latency">')  # fmt: skip
        title = f"studio · {self.original.name} (static picture: run the notebook to use it)"
        bundle["text/html"] = _html.card(title, "".join(parts))
        bundle["text/plain"] = f"nbd.studio for {self.original.name}: {len(self.variants)} variants"
        return bundle


def _bundle(obj: Any) -> dict[str, Any]:
    """A display object's MIME bundle, without needing a kernel to format it."""
    if hasattr(obj, "_repr_mimebundle_"):
        data = obj._repr_mimebundle_()
        bundle: dict[str, Any] = data[0] if isinstance(data, tuple) else data
        return bundle
    return {"text/html": obj._repr_html_(), "text/plain": str(obj)}


def _append(output: Any, bundle: dict[str, Any]) -> None:
    """Add a display to an Output widget (works headless, unlike ``with output:``)."""
    output.outputs += ({"output_type": "display_data", "data": bundle, "metadata": {}},)


def _png(figure: Any) -> str:
    """A matplotlib figure as base64 PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode()


def _calibration(data: Any) -> Any:
    x = data[0] if isinstance(data, tuple) and len(data) == 2 else data
    return None if x is None else x[:128]
