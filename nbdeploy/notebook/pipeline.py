"""What ``%deploy`` does around the pipeline (``nbdeploy.pipeline``): a progress line
naming the step running (and the step inside it) while it runs, then a card with
each step's time."""

from __future__ import annotations

from .._progress import steps
from ..artifact import Artifact
from ..pipeline import Pipeline
from ..targets import Deployed

__all__ = ["run_pipeline"]


def run_pipeline(plan: Pipeline) -> Deployed | Artifact:
    """Run ``plan`` with a progress line and show its card; returns where the model was
    deployed (a Deployment or a PushResult), or the prepared artifact for a dry run.
    The line is emptied whatever happens, so no stale progress stays above the card or
    an error."""
    from IPython.display import display

    from .card import DeployCard

    with steps(f"deploy {plan.name}", plan.labels()) as job:
        result = plan.run(on_step=job.step)
    display(DeployCard.build(plan, result))
    return result.deployed if result.deployed is not None else result.artifact
