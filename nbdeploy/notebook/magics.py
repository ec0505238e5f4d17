"""``%deploy``: one line from a model in the notebook to a live endpoint.

    %load_ext nbdeploy
    %deploy model --example x                      # export, optimize, serve locally
    %deploy model --example x --quantize int8-static --calibration x_cal --canary 10
    %deploy model --example x --to triton-host:8000   (or a folder: a Triton repository)
    %deploy list | promote NAME | rollback NAME | stop

Mistakes raise ``UsageError`` (one line, no traceback): an unknown variable by its name,
an unknown scheme with the valid ones, an unreachable target.
"""

from __future__ import annotations

import ast
import logging
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Unicode

from ..errors import NbDeployError
from ..pipeline import build_pipeline
from .pipeline import run_pipeline

log = logging.getLogger(__name__)

__all__ = ["NbDeployMagics"]

SUBCOMMANDS = ("list", "promote", "rollback", "stop")


@magics_class
class NbDeployMagics(Magics):
    """The ``%deploy`` magic; configurable with ``%config NbDeployMagics.<trait> = ...``."""

    default_target = Unicode(
        "", help="Where %deploy sends models when --to is not given ('' = the local server)"
    ).tag(config=True)
    repository = Unicode(
        "", help="The local server's model repository ('' = nbd.server.default_repository())"
    ).tag(config=True)
    optimize_by_default = Bool(True, help="Optimize the graph unless --no-optimize").tag(
        config=True
    )

    @magic_arguments()
    @argument("words", nargs="*", help="MODEL, or: list | promote NAME | rollback NAME | stop")
    @argument("--example", "-x", help="example input: a variable name or expression")
    @argument("--name", "-n", help="model name on the server (default: the variable's name)")
    @argument("--optimize", dest="optimize", action="store_true", default=None,
              help="optimize the graph (the default)")  # fmt: skip
    @argument("--no-optimize", dest="optimize", action="store_false", help="serve as exported")
    @argument("--quantize", "-q", help="quantization scheme, e.g. int8-static, fp16, kmeans-16")
    @argument("--calibration", help="calibration inputs for int8-static: a variable name")
    @argument("--to", help="HOST:PORT of a Triton, or a folder for a Triton repository")
    @argument("--version", type=int, help="version number (default: the next one)")
    @argument("--canary", type=float, help="percent of traffic for the new version")
    @argument("--labels", help="class names of the first output: a list in the notebook")
    @argument("--dry-run", action="store_true", help="prepare the model but serve nothing")
    @line_magic
    def deploy(self, line: str) -> Any:
        """Export, optimize, (quantize,) and serve a model from the notebook; returns the
        Deployment. ``%deploy list``, ``promote NAME``, ``rollback NAME``, ``stop`` manage
        what runs."""
        args = self._parse(line)
        if args.words and args.words[0] in SUBCOMMANDS:
            return self._subcommand(args.words)
        if len(args.words) != 1:
            raise UsageError("%deploy needs one model: %deploy MODEL --example X")
        return self._deploy(args, args.words[0], self._value(args.words[0], "model"))

    @cell_magic("deploy")  # type: ignore[arg-type]
    def deploy_cell(self, line: str, cell: str) -> Any:
        """``%%deploy --example X``: the cell runs, and its last expression is the model."""
        args = self._parse(line)
        model = self._run_cell_for_value(cell)
        return self._deploy(args, args.name or "model", model)

    # -- the pieces ------------------------------------------------------------------------

    @property
    def _namespace(self) -> dict[str, Any]:
        assert self.shell is not None, "the magics are registered on a shell"
        namespace: dict[str, Any] = self.shell.user_ns
        return namespace

    def _parse(self, line: str) -> Any:
        try:
            return self.deploy.parser.parse_args(split_line(line))
        except UsageError:
            raise
        except SystemExit as err:  # argparse's way of saying "bad arguments"
            raise UsageError(f"%deploy: bad arguments: {line!r}; see %deploy?") from err

    def _value(self, expression: str, what: str) -> Any:
        try:
            return eval(expression, self._namespace)  # the user's own namespace
        except NameError as err:
            raise UsageError(f"{what} {expression!r}: {err} in this notebook") from None
        except Exception as err:
            raise UsageError(f"{what} {expression!r} could not be evaluated: {err}") from None

    def _run_cell_for_value(self, cell: str) -> Any:
        tree = ast.parse(cell)
        if not tree.body or not isinstance(tree.body[-1], ast.Expr):
            raise UsageError("%%deploy: the cell's last line must be the model (an expression)")
        last_line = tree.body.pop()
        assert isinstance(last_line, ast.Expr)
        last = ast.Expression(last_line.value)
        namespace = self._namespace
        exec(compile(tree, "<%%deploy>", "exec"), namespace)
        return eval(compile(last, "<%%deploy>", "eval"), namespace)

    def _deploy(self, args: Any, label: str, model: Any) -> Any:
        if args.example is None:
            raise UsageError("%deploy needs an example input: --example X")
        example = self._value(args.example, "example")
        calibration = self._value(args.calibration, "calibration") if args.calibration else None
        labels = self._value(args.labels, "labels") if args.labels else None
        try:
            plan = build_pipeline(
                model,
                example,
                name=args.name or _default_name(label),
                optimize=self.optimize_by_default if args.optimize is None else args.optimize,
                scheme=args.quantize,
                calibration=calibration,
                target=args.to or self.default_target or None,
                repository=self.repository or None,
                version=args.version,
                canary=args.canary,
                labels=labels,
                dry_run=args.dry_run,
            )  # fmt: skip
            deployed = run_pipeline(plan)
            # The card is shown: a bare `%deploy ...` line would show the result again.
            return None if self._is_bare_statement() else deployed
        except KeyboardInterrupt:
            print("%deploy cancelled; nothing was changed on the server")
            return None
        except NbDeployError as err:
            raise UsageError(f"%deploy: {err}") from None

    def _is_bare_statement(self) -> bool:
        """Whether the running cell ends with this magic as an expression (IPython would
        display what it returns) rather than assigning it (``dep = %deploy ...``). Read
        from the cell's history entry, as IPython's own ``;`` check does."""
        history = getattr(self.shell, "history_manager", None)
        try:
            tree = ast.parse(history.input_hist_parsed[-1] if history is not None else "")
        except (SyntaxError, IndexError):
            return False
        last = tree.body[-1] if tree.body else None
        return (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
                and "run_line_magic" in ast.unparse(last.value.func)
                and ast.unparse(last.value.args[0]) == "'deploy'")  # fmt: skip

    def _subcommand(self, words: list[str]) -> Any:
        from . import manage

        command, rest = words[0], words[1:]
        try:
            if command == "list":
                return manage.deployment_table(self.repository or None)
            if command == "stop":
                return manage.stop(self.repository or None)
            if len(rest) != 1:
                raise UsageError(f"%deploy {command} needs one model name: %deploy {command} NAME")
            return manage.traffic_action(command, rest[0], self.repository or None)
        except NbDeployError as err:
            raise UsageError(f"%deploy {command}: {err}") from None


def split_line(line: str) -> list[str]:
    """The words of a ``%deploy`` line as a user reads them: shell quoting removed (a
    quoted value is the text inside the quotes), and an expression that spaces split
    (``x[:, :, :4]``, ``f(a, b)``) kept whole until its brackets close."""
    try:
        words = shlex.split(line)
    except ValueError as err:
        raise UsageError(f"%deploy: {err} in {line!r}") from None
    merged: list[str] = []
    depth = 0
    for word in words:
        if depth > 0:
            merged[-1] += " " + word
        else:
            merged.append(word)
        depth += sum(word.count(c) for c in "([{") - sum(word.count(c) for c in ")]}")
    return merged


def _default_name(label: str) -> str:
    """A model name from the variable's name (``my_model`` -> ``my-model``)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in label.strip()).strip("-").lower()
    return cleaned or "model"
