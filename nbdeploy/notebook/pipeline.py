"""What ``%deploy`` does around the pipeline (``nbdeploy.pipeline``): a progress bar
while its steps run, then a card."""

from __future__ import annotations

from ..artifact import Artifact
from ..pipeline import Pipeline
from ..targets import Deployed

__all__ = ["run_pipeline"]


def run_pipeline(plan: Pipeline) -> Deployed | Artifact:
    """Run ``plan`` with a progress bar and show its card; returns where the model was
    deployed (a Deployment or a PushResult), or the prepared artifact for a dry run."""
    from IPython.display import display
    from tqdm.auto import tqdm

    from .card import DeployCard

    with tqdm(total=len(plan.labels()), desc="deploy", leave=False) as bar:
        begun: list[str] = []

        def step(label: str) -> None:  # called as each step begins: the last one is done
            if begun:
                bar.update()
            begun.append(label)
            bar.set_postfix_str(label)

        result = plan.run(on_step=step)
        bar.update()
    display(DeployCard.build(plan, result))
    return result.deployed if result.deployed is not None else result.artifact
