"""Progress lines: drawn only for work past the delay, naming the step (and the step
inside it), and cleared at the end whatever happened; silent when asked."""

from __future__ import annotations

import time

import nbformat
import pytest
from nbclient import NotebookClient

from nbdeploy._progress import detail, note, steps
from tests import onnx_models


class Lines:
    """A display that keeps what it was asked to show."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.cleared = 0

    def show(self, text: str) -> None:
        self.shown.append(text)

    def clear(self) -> None:
        self.cleared += 1


def test_steps_are_named_with_their_count_and_time_and_cleared_at_the_end() -> None:
    lines = Lines()
    with steps("export m", ["torch export", "check parity"], display=lines, delay=0) as job:
        job.step("torch export")
        note("check parity")  # from deeper code, without the job in hand
    assert lines.shown[0].startswith("export m · torch export (1/2) · ")
    assert lines.shown[-1].startswith("export m · check parity (2/2) · ")
    assert lines.shown[-1].endswith(" s") and lines.cleared == 1


def test_a_long_step_says_where_it_is_inside_itself() -> None:
    """Loops that take minutes on large models (a weight at a time) say which weight."""
    lines = Lines()
    with steps("quantize m", ["int8-dynamic", "measure"], display=lines, delay=0) as job:
        job.step("int8-dynamic")
        detail("weight 3 of 170")
        with steps("inner", ["rewrite"], display=lines):
            note("rewrite")
            detail("weight 4 of 170")
    assert lines.shown[1].startswith("quantize m · int8-dynamic › weight 3 of 170 (1/2) · ")
    assert lines.shown[-1].startswith("quantize m · int8-dynamic › rewrite › weight 4 of 170")
    detail("outside any job: nothing happens")


def test_a_job_inside_another_shows_as_its_detail() -> None:
    lines = Lines()
    with steps("deploy m", ["export", "serve"], display=lines, delay=0) as outer:
        outer.step("export")
        with steps("export m", ["torch export", "check parity"], display=Lines()) as inner:
            inner.step("torch export")
            note("check parity")
        outer.step("serve")
    assert any(t.startswith("deploy m · export › check parity (1/2)") for t in lines.shown)
    assert lines.shown[-1].startswith("deploy m · serve (2/2)")  # the detail is gone


def test_nothing_is_drawn_before_the_delay_and_an_error_still_clears() -> None:
    lines = Lines()
    with pytest.raises(RuntimeError), steps("quick", ["a"], display=lines) as job:
        job.step("a")
        raise RuntimeError("boom")
    assert lines.shown == [] and lines.cleared == 1


def test_progress_false_is_silent() -> None:
    lines = Lines()
    with steps("x", ["a"], display=lines, delay=0, enabled=False) as job:
        job.step("a")
    assert lines.shown == [] and lines.cleared == 0


def test_a_slow_step_ticks_while_it_runs() -> None:
    lines = Lines()
    with steps("slow", ["wait"], display=lines, delay=0) as job:
        job.step("wait")
        time.sleep(1.2)  # the ticker redraws every half second; nothing else moves
    assert len(lines.shown) >= 2


@pytest.mark.slow
def test_a_saved_notebook_keeps_no_progress_output(tmp_path: object) -> None:
    """In a real kernel, a slow export's line is drawn, then emptied: the saved
    notebook holds no stale progress text."""
    model = onnx_models.affine()
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import time, numpy as np, onnx, nbdeploy as nbd\n"
        "from nbdeploy import _progress\n"
        "_progress.DELAY_S = 0.0\n"
        f"model = onnx.load_from_string({model.SerializeToString()!r})\n"
        "art = nbd.export(model, example={'x': np.ones((2, 3), np.float32)}, name='m')\n"
        "print('exported', art.name)")])  # fmt: skip
    NotebookClient(book, timeout=120, kernel_name="python3").execute()
    outputs = book.cells[0].outputs
    texts = [o.get("text", "") + str(o.get("data", {})) for o in outputs]
    assert any("exported m" in t for t in texts)
    assert not any("export m ·" in t for t in texts), texts
    emptied = [o for o in outputs if o.get("output_type") == "display_data"]
    assert [o["data"] for o in emptied] == [{"text/plain": ""}]  # drawn, then emptied
