"""Loading model versions as one transaction: open every new version beside the ones
serving (from the repository, or from staged request files), and only when all are ready
commit the files, save config and traffic, swap them in and retire what they replace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NbDeployError
from . import config as cfg
from . import traffic as tr
from .batcher import Scheduler
from .codecs import ProtocolError
from .repository import Repository
from .runtime import OnnxModel
from .stats import VersionStats

log = logging.getLogger(__name__)

__all__ = ["Loader", "Served", "Version", "retire"]


@dataclass
class Version:
    """One loaded model version and the scheduler in front of it."""

    number: int
    model: OnnxModel
    scheduler: Scheduler
    stats: VersionStats


@dataclass
class Served:
    """A model's loaded versions and how traffic splits between them."""

    versions: dict[int, Version] = field(default_factory=dict)
    traffic: tr.Traffic = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    error: str = ""  # why the last load failed


class Loader:
    """Opens model versions of one repository; runs go to ``executor``."""

    def __init__(self, repository: Repository, executor: Executor) -> None:
        self.repository = repository
        self._executor = executor

    async def apply(
        self,
        name: str,
        served: Served,
        config_json: str | bytes | None,
        staging: Path | None,
        traffic: Mapping[int, float] | None,
        canary: float | None,
    ) -> None:
        """Load what the request asks for, then swap it in; on failure nothing changes."""
        config = self._config(name, config_json)
        staged = (
            sorted(int(p.name) for p in staging.iterdir() if p.name.isdigit()) if staging else []
        )
        on_disk = sorted(set(self.repository.versions(name)) | set(staged))
        target = self._target_traffic(served, config, on_disk, staged, traffic, canary)
        fresh = {v for v in target if v in staged or config_json or v not in served.versions}
        loaded = await self._load_versions(name, config, fresh, staging)
        if staging is not None:
            self.repository.commit(name, staging)
        if config_json is not None:
            self.repository.save_config(name, config)
        self.repository.save_traffic(name, target)
        retired = [served.versions[v] for v in served.versions if v not in target or v in fresh]
        served.versions = {v: loaded.get(v) or served.versions[v] for v in target}
        served.traffic, served.error = target, ""
        log.info("model %s serving %s", name, target)
        await retire(retired)

    def _config(self, name: str, config_json: str | bytes | None) -> cfg.ModelConfig:
        try:
            config = cfg.from_json(config_json) if config_json else self.repository.config(name)
        except NbDeployError as err:
            raise ProtocolError(f"model '{name}': {err}") from err
        if config.name and config.name != name:
            raise ProtocolError(f"the config names model '{config.name}', not '{name}'")
        config.name = name
        return config

    def _target_traffic(
        self,
        served: Served,
        config: cfg.ModelConfig,
        on_disk: list[int],
        staged: list[int],
        traffic: Mapping[int, float] | None,
        canary: float | None,
    ) -> tr.Traffic:
        if traffic:
            return tr.check(traffic, on_disk)
        if canary is not None:
            return tr.canary(served.traffic, max(staged or on_disk), canary)
        policy = config.version_policy
        kind = policy.WhichOneof("policy_choice") or "latest"
        return tr.by_policy(kind, policy.latest.num_versions, list(policy.specific.versions),
                            on_disk)  # fmt: skip

    async def _load_versions(
        self, name: str, config: cfg.ModelConfig, numbers: set[int], staging: Path | None
    ) -> dict[int, Version]:
        loaded: dict[int, Version] = {}
        try:
            for number in sorted(numbers):
                path = self.repository.model_file(name, number, config)
                if staging is not None and (staging / str(number)).is_dir():
                    path = staging / path.relative_to(self.repository.folder(name))
                loaded[number] = await self._open(name, number, path, config)
        except BaseException:
            await retire(loaded.values())
            raise
        return loaded

    async def _open(self, name: str, number: int, path: Path, config: cfg.ModelConfig) -> Version:
        if not path.is_file():
            raise ProtocolError(f"model '{name}' version {number} has no {path.name}")
        version_config = cfg.ModelConfig()
        version_config.CopyFrom(config)
        try:
            model = await asyncio.to_thread(OnnxModel, path, version_config)
        except Exception as err:
            raise ProtocolError(f"failed to load '{name}' version {number}: {err}") from err
        stats = VersionStats()
        scheduler = Scheduler(model.run, model.config, stats, self._executor)
        return Version(number, model, scheduler, stats)


async def retire(versions: Iterable[Version]) -> None:
    """Let each version finish what it has queued, then stop it."""
    for loaded in list(versions):
        await loaded.scheduler.close()
