"""Progress for slow work: a line that appears only once a job has run a second, names
the step it is in and the time so far, ticks while one long step runs, and leaves
nothing behind (no stale "0%" line in a saved notebook).

In a Jupyter kernel it is an HTML line that updates in place and is emptied at the end
(:mod:`nbdeploy.notebook.progress`); elsewhere a tqdm bar on stderr.

    with steps("export", ["export", "check parity"], enabled=progress) as bar:
        bar.step("export")
        ...
        note("check parity")   # from code deeper down: the running job's next step
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

__all__ = ["DELAY_S", "Display", "Steps", "detail", "note", "steps"]

DELAY_S = 1.0  # shown only for work that takes longer than this
TICK_S = 0.5
_RUNNING: ContextVar[Steps | None] = ContextVar("nbdeploy_progress", default=None)


class Display(Protocol):
    """Where progress is drawn: ``show`` is called with a line of text while the work
    runs (from a ticking thread too), ``clear`` once at the end."""

    def show(self, text: str) -> None: ...

    def clear(self) -> None: ...


class Steps:
    """The state of one job: its steps, the current one, elapsed time."""

    def __init__(
        self, desc: str, names: Sequence[str], display: Display | None, delay: float = DELAY_S
    ) -> None:
        self.desc = desc
        self.delay = delay
        self.names = list(names)
        self.current = ""
        self.detail = ""  # the step a nested job is in
        self.done = 0
        self.started = time.perf_counter()
        self._display = display
        self._lock = threading.Lock()

    def step(self, name: str) -> None:
        """Begin the step called ``name`` (the one before it is done)."""
        with self._lock:
            if self.current:
                self.done += 1
            self.current, self.detail = name, ""
        self.draw()

    def say(self, text: str) -> None:
        """Say where the current step is (``"weight 12 of 170"``), drawn after its name."""
        with self._lock:
            self.detail = text
        self.draw()

    def text(self) -> str:
        """``"export · check parity (2/3) · 4.1 s"``."""
        elapsed = time.perf_counter() - self.started
        total = max(len(self.names), self.done + 1)
        where = f"{self.current} › {self.detail}" if self.detail else self.current
        return f"{self.desc} · {where} ({self.done + 1}/{total}) · {elapsed:.1f} s"

    def draw(self) -> None:
        """Show the current state, once the job has run ``DELAY_S``."""
        if self._display is not None and time.perf_counter() - self.started >= self.delay:
            self._display.show(self.text())


@contextmanager
def steps(
    desc: str,
    names: Sequence[str],
    *,
    enabled: bool | None = True,
    display: Display | None = None,
    delay: float | None = None,
) -> Iterator[Steps]:
    """A job of named steps, drawn while it runs (``enabled=False``: silent). Inside
    another job (``%deploy``'s export), its steps show as the outer step's detail.
    ``display``: where to draw (default: the kernel's output, else stderr)."""
    outer = _RUNNING.get()
    if outer is not None:
        with _nested(outer, desc, names) as inner:
            yield inner
        return
    shown = (display or _display()) if enabled is not False else None
    job = Steps(desc, names, shown, DELAY_S if delay is None else delay)
    stop = threading.Event()
    ticker = threading.Thread(target=_tick, args=(job, stop), daemon=True, name="nbd-progress")
    ticker.start()
    token = _RUNNING.set(job)
    try:
        yield job
    finally:
        _RUNNING.reset(token)
        stop.set()
        ticker.join()
        if job._display is not None:
            job._display.clear()


@contextmanager
def _nested(outer: Steps, desc: str, names: Sequence[str]) -> Iterator[Steps]:
    inner = _Detail(outer, desc, names)
    token = _RUNNING.set(inner)
    try:
        yield inner
    finally:
        _RUNNING.reset(token)
        outer.detail = ""


class _Detail(Steps):
    """A job inside another: its steps become the outer job's detail."""

    def __init__(self, outer: Steps, desc: str, names: Sequence[str]) -> None:
        super().__init__(desc, names, None)
        self._outer = outer

    def step(self, name: str) -> None:
        self.current = name
        self._outer.say(name)

    def say(self, text: str) -> None:
        self._outer.say(f"{self.current} › {text}" if self.current else text)


def note(name: str) -> None:
    """Begin step ``name`` of the job running in this context, if any (a no-op outside
    one): lets code deep in a job say where it is without being passed the job."""
    job = _RUNNING.get()
    if job is not None:
        job.step(name)


def detail(text: str) -> None:
    """Say where the running job's current step is (``"weight 12 of 170"``), if a job
    runs in this context: for loops deep in a step that take minutes on large models."""
    job = _RUNNING.get()
    if job is not None:
        job.say(text)


def _tick(job: Steps, stop: threading.Event) -> None:
    while not stop.wait(TICK_S):
        job.draw()


def _display() -> Display:
    if "ipykernel" in sys.modules:
        from .notebook.progress import KernelDisplay, in_kernel

        if in_kernel():
            return KernelDisplay()
    return _Stderr()


class _Stderr:
    """One line on stderr, rewritten in place (``\\r``) and erased at the end."""

    def __init__(self) -> None:
        self._width = 0

    def show(self, text: str) -> None:
        self._width = max(self._width, len(text))
        sys.stderr.write("\r" + text.ljust(self._width))
        sys.stderr.flush()

    def clear(self) -> None:
        if self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            sys.stderr.flush()
