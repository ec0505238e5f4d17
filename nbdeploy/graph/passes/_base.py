"""What every nbdeploy graph pass shares: a name, and how often each of its rules fired.

A pass is an ``onnx_ir`` in-place pass (so onnx-ir's ``PassManager`` and ``Sequential``
can run it too). Rule passes apply onnxscript rewrite rules one rule at a time, until
none fires, so the report can say which rule changed what.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Mapping

import onnx_ir as ir
from onnxscript.rewriter import RewriteRuleSet
from onnxscript.rewriter._rewrite_rule import RewriteRule

_MAX_ROUNDS = 20  # rules can enable each other; stop well before anything loops

# Loops and the sequence/optional types they carry: onnx's shape inference can mistype
# values there, and onnxscript's constant folder crashes on some of them.
LOOP_AND_SEQUENCE_OPS = frozenset({
    "Loop", "Scan", "SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceErase",
    "SequenceAt", "SequenceLength", "SplitToSequence", "ConcatFromSequence", "SequenceMap",
    "Optional", "OptionalGetElement", "OptionalHasElement",
})  # fmt: skip


class CountingPass(ir.passes.InPlacePass):
    """An in-place pass that records how many times each of its rules fired."""

    name: str = "pass"
    description: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.fired: Counter[str] = Counter()

    def record(self, rule: str, count: int) -> None:
        """Add ``count`` firings of ``rule``."""
        if count:
            self.fired[rule] += count


class RulePass(CountingPass):
    """Applies named rewrite rules until a fixed point. Rules leave alone what they do not
    match: a node they do not understand is never touched."""

    @abc.abstractmethod
    def rules(self) -> Mapping[str, RewriteRule | RewriteRuleSet]:
        """The rules, by the name shown in reports."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        sets = {
            name: rule if isinstance(rule, RewriteRuleSet) else RewriteRuleSet([rule])
            for name, rule in self.rules().items()
        }
        modified = False
        for _ in range(_MAX_ROUNDS):
            round_count = 0
            for name, rule_set in sets.items():
                count = rule_set.apply_to_model(model)
                self.record(name, count)
                round_count += count
            modified |= round_count > 0
            if not round_count:
                break
        return ir.passes.PassResult(model, modified)


def count_nodes(graph: ir.Graph | ir.Function) -> int:
    """Nodes in a graph, subgraphs (If/Loop/Scan bodies) included."""
    return sum(1 for _ in ir.traversal.RecursiveGraphIterator(graph))


def request_nodes(graph: ir.Graph) -> list[ir.Node]:
    """The nodes that depend, transitively, on a graph input: those each request runs.
    Everything else computes constants, which onnxruntime folds when it loads the model."""
    live: set[ir.Value] = set(graph.inputs)
    found = []
    for node in graph:
        if any(value in live for value in node.inputs if value is not None) or _reads_outer(
            node, live
        ):
            live.update(node.outputs)
            found.append(node)
    return found


def count_request_nodes(graph: ir.Graph) -> int:
    """How many nodes run per request (see :func:`request_nodes`)."""
    return len(request_nodes(graph))


def _reads_outer(node: ir.Node, live: set[ir.Value]) -> bool:
    """True when a subgraph of ``node`` (If/Loop/Scan bodies) uses a live outer value."""
    for attr in node.attributes.values():
        graphs = (
            [attr.value] if attr.type == ir.AttributeType.GRAPH
            else list(attr.value) if attr.type == ir.AttributeType.GRAPHS else []
        )  # fmt: skip
        for sub in graphs:
            for inner in ir.traversal.RecursiveGraphIterator(sub):
                if any(v in live for v in inner.inputs if v is not None):
                    return True
    return False
