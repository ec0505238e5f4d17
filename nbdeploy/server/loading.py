"""Loading model versions as one transaction: open every new version beside the ones
serving, and only when all are ready commit them to the repository (version folders,
then config, then traffic — see :mod:`.repository` for why that order survives a kill),
swap them in and retire what they replace. Restoring at start goes version by version:
a damaged version is skipped and reported, the others serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DamagedFileError, NbDeployError, ProtocolError
from ..types import TensorSpec
from . import config as cfg
from . import traffic as tr
from .batcher import Scheduler
from .faults import crash_point
from .metrics import SharedCounters
from .repository import Repository, is_version
from .runtime import OnnxModel
from .stats import VersionStats

log = logging.getLogger(__name__)

__all__ = ["MAX_INSTANCES", "Change", "Loader", "Served", "Version", "retire"]

RESTORED = "0"  # the load name of versions a start brings back (every worker agrees on it)
MAX_INSTANCES = 64  # concurrent runs of one version: far past what a CPU or GPU can use


@dataclass
class Version:
    """One loaded model version and the scheduler in front of it."""

    number: int
    model: OnnxModel
    scheduler: Scheduler
    stats: VersionStats
    load: str = "0"  # which load of it this is (its shared counters are this load's)


@dataclass
class Served:
    """A model's loaded versions, how traffic splits between them, and the versions that
    could not be restored (with why)."""

    versions: dict[int, Version] = field(default_factory=dict)
    traffic: tr.Traffic = field(default_factory=dict)
    damaged: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """What one repository load asks for.

    Attributes:
        config_json: A config that replaces ``config.pbtxt``.
        files: A staging folder of file overrides (``<version>/...`` and model files).
        staged: One new version's files, staged by a client; its number is assigned here.
        version: The number ``staged`` must get (default: one above every version known).
        traffic: Shares by version; the versions named are the ones loaded.
        canary: Percent of traffic for the newest version, the rest to the current one.
    """

    config_json: str | bytes | None = None
    files: Path | None = None
    staged: Path | None = None
    version: int | None = None
    traffic: Mapping[int, float] | None = None
    canary: float | None = None


class Loader:
    """Opens model versions of one repository; runs go to ``executor``."""

    def __init__(
        self,
        repository: Repository,
        executor: Executor,
        counters: SharedCounters | None = None,
        *,
        session_threads: int = 0,
        workers: int = 1,
    ) -> None:
        self.repository = repository
        self._executor = executor
        self._counters = counters
        self._session_threads = session_threads  # onnxruntime intra-op threads (0: its own)
        self._workers = workers  # processes sharing the config's instance count

    async def apply(
        self, name: str, served: Served, change: Change, load: str
    ) -> tuple[int | None, set[int]]:
        """Load what ``change`` asks for, commit it, then swap it in; on failure nothing
        changes. Returns the number given to a staged version (if any) and the numbers of
        the versions opened anew (under the name ``load``: their counters start at 0)."""
        config = self._config(name, change.config_json)
        folders = self._new_folders(name, served, change)
        number = max(folders) if change.staged is not None else None
        on_disk = sorted(set(self.repository.versions(name)) | set(folders))
        target = self._target_traffic(served, config, on_disk, number, change)
        reopen = change.config_json is not None  # a new config applies to every version
        fresh = {v for v in target if v in folders or reopen or v not in served.versions}
        if config.input:  # else completed from the model file: checked once loaded
            _check_signature(name, served, cfg.signature(config), "the new config")
        labels_in = _labels_folder(config, change.files) or self.repository.folder(name)
        loaded = await self._load_versions(name, config, fresh, folders, labels_in, load)
        try:
            for number, version in sorted(loaded.items()):
                signature = (version.model.inputs, version.model.outputs)
                _check_signature(name, served, signature, f"version {number}")
            crash_point("loaded")
            self.repository.commit(name, folders, change.files)
            if change.config_json is not None:  # as completed from the model: Triton reads it
                self.repository.save_config(name, _as_loaded(config, loaded))
            self.repository.save_traffic(name, target)
        except BaseException:
            await retire(loaded.values())
            raise
        retired = [served.versions[v] for v in served.versions if v not in target or v in fresh]
        served.versions = {v: loaded.get(v) or served.versions[v] for v in target}
        served.traffic = target
        served.damaged = {v: why for v, why in served.damaged.items() if v not in target}
        log.info("model %s serving %s", name, target)
        await retire(retired)
        return number, fresh

    async def restore(self, name: str) -> Served | None:
        """The model as it was last served (``None`` if it was unloaded on purpose).

        A version that fails to load is skipped and kept in ``damaged`` with its reason;
        if the saved traffic is damaged or names no version that loads, the newest
        version that loads takes all the traffic.
        """
        config = self.repository.config(name)
        on_disk = self.repository.versions(name)
        try:
            saved = self.repository.traffic(name)
        except DamagedFileError as err:
            log.warning("%s; serving the newest version that loads instead", err)
            saved = None
        if saved == {}:
            return None
        wanted = saved or _policy_traffic(config, on_disk)
        served = Served()
        for number in sorted(wanted):
            await self._restore_version(name, config, number, served)
        served.traffic = _surviving(wanted, served.versions)
        for number in reversed(on_disk):  # nothing asked for loads: the newest that does
            if served.traffic:
                break
            if number not in wanted and await self._restore_version(name, config, number, served):
                served.traffic = {number: 100.0}
        if not served.traffic:
            raise ProtocolError(f"model '{name}': no version could be loaded")
        if served.traffic != wanted:
            log.warning("model %s: serving %s instead of %s", name, served.traffic, wanted)
        return served

    async def refresh(
        self, name: str, served: Served | None, reopen: set[int], load: str
    ) -> tuple[Served | None, list[Version]]:
        """The model as another worker just committed it to the repository: the versions
        it opened anew (``reopen``, under the name ``load``) and any this worker lacks are
        opened from disk, the others stay as they are; ``None`` if it was unloaded. Also
        the versions it no longer serves: the caller retires them once the new state is
        in place, so no request picks a version that is being stopped."""
        saved = self.repository.traffic(name)
        if saved is None:
            return await self.restore(name), []
        served = served or Served()
        if not saved:
            return None, list(served.versions.values())
        config = self.repository.config(name)
        fresh = Served()
        for number in sorted(saved):
            if number in served.versions and number not in reopen:
                fresh.versions[number] = served.versions[number]
            else:
                named = load if number in reopen else RESTORED
                await self._restore_version(name, config, number, fresh, named)
        fresh.traffic = _surviving(saved, fresh.versions)
        kept = set(map(id, fresh.versions.values()))
        return fresh, [v for v in served.versions.values() if id(v) not in kept]

    async def _restore_version(
        self, name: str, config: cfg.ModelConfig, number: int, served: Served, load: str = RESTORED
    ) -> bool:
        try:
            path = self.repository.model_file(name, number, config)
            labels_in = self.repository.folder(name)
            served.versions[number] = await self._open(name, number, path, config, labels_in,
                                                       load)  # fmt: skip
        except ProtocolError as err:
            served.damaged[number] = str(err)
            log.error("model %s version %d is not served: %s", name, number, err)
            return False
        return True

    def _config(self, name: str, config_json: str | bytes | None) -> cfg.ModelConfig:
        try:
            config = cfg.from_json(config_json) if config_json else self.repository.config(name)
        except NbDeployError as err:
            raise ProtocolError(f"failed to load '{name}': {err}") from err
        if config.name and config.name != name:
            raise ProtocolError(
                f"failed to load '{name}': the config names model '{config.name}', not '{name}'"
            )
        config.name = name
        instances = sum(group.count for group in config.instance_group)
        if instances > MAX_INSTANCES or any(g.count < 0 for g in config.instance_group):
            raise ProtocolError(
                f"model '{name}': instance_group asks for {instances} instances; this server "
                f"runs at most {MAX_INSTANCES} per model version (they share one onnxruntime "
                "session; more do not run faster)"
            )
        return config

    def _new_folders(self, name: str, served: Served, change: Change) -> dict[int, Path]:
        """Folders of the versions this change brings, by number."""
        folders = {}
        if change.files is not None:
            folders = {int(p.name): p for p in change.files.iterdir() if is_version(p.name)}
        if change.staged is not None:
            known = set(self.repository.versions(name)) | set(served.versions) | set(folders)
            number = change.version if change.version is not None else max(known, default=0) + 1
            if number < 1 or number in known:
                raise ProtocolError(
                    f"version {number} of '{name}' is taken or invalid; versions on disk: "
                    f"{sorted(known)}",
                    status=409,
                )
            folders[number] = change.staged
        return folders

    def _target_traffic(
        self,
        served: Served,
        config: cfg.ModelConfig,
        on_disk: list[int],
        staged: int | None,
        change: Change,
    ) -> tr.Traffic:
        if not on_disk:
            name = config.name
            raise ProtocolError(
                f"failed to load '{name}', failed to poll from model repository: there is no "
                f"version of it (add {name}/1/model.onnx, or send it as a file override)"
            )
        if change.traffic:
            return tr.check(change.traffic, on_disk)
        if change.canary is not None:
            return tr.canary(served.traffic, staged or max(on_disk), change.canary)
        if staged is not None:
            return tr.replace(served.traffic, staged)
        return _policy_traffic(config, on_disk)

    async def _load_versions(
        self,
        name: str,
        config: cfg.ModelConfig,
        numbers: set[int],
        folders: Mapping[int, Path],
        labels_in: Path,
        load: str,
    ) -> dict[int, Version]:
        loaded: dict[int, Version] = {}
        try:
            for number in sorted(numbers):
                path = self.repository.model_file(name, number, config)
                if number in folders:
                    path = folders[number] / path.name
                loaded[number] = await self._open(name, number, path, config, labels_in, load)
        except BaseException:
            await retire(loaded.values())
            raise
        return loaded

    async def _open(
        self,
        name: str,
        number: int,
        path: Path,
        config: cfg.ModelConfig,
        labels_in: Path,
        load: str,
    ) -> Version:
        if not path.is_file():
            raise ProtocolError(f"model '{name}' version {number} has no {path.name}")
        version_config = cfg.ModelConfig()
        version_config.CopyFrom(config)
        try:
            model = await asyncio.to_thread(
                OnnxModel, path, version_config, labels_in, threads=self._session_threads
            )
        except Exception as err:
            raise ProtocolError(f"failed to load '{name}' version {number}: {err}") from err
        counters = self._counters
        shared = counters.version(name, str(number), load) if counters is not None else None
        stats = VersionStats(shared=shared)
        scheduler = Scheduler(model.run, model.config, stats, self._executor,
                              workers=self._workers)  # fmt: skip
        return Version(number, model, scheduler, stats, load)


def _labels_folder(config: cfg.ModelConfig, files: Path | None) -> Path | None:
    """The staged request files, when they bring the config's label files."""
    wanted = [t.label_filename for t in config.output if t.label_filename]
    if files is not None and wanted and all((files / f).is_file() for f in wanted):
        return files
    return None


def _as_loaded(config: cfg.ModelConfig, loaded: Mapping[int, Version]) -> cfg.ModelConfig:
    """The config to write: a loaded version's, completed from its model file (platform,
    inputs, outputs) the way Triton completes one, so ``tritonserver`` reads the folder."""
    if not loaded:
        return config
    complete = cfg.ModelConfig()
    complete.CopyFrom(next(iter(loaded.values())).model.config)
    return complete


def _policy_traffic(config: cfg.ModelConfig, on_disk: list[int]) -> tr.Traffic:
    policy = config.version_policy
    kind = policy.WhichOneof("policy_choice") or "latest"
    return tr.by_policy(kind, policy.latest.num_versions, list(policy.specific.versions), on_disk)


def _surviving(wanted: Mapping[int, float], loaded: Mapping[int, Version]) -> tr.Traffic:
    """The wanted split over the versions that loaded, rescaled to 100; empty if no
    version that was meant to take traffic loaded."""
    kept = {v: share for v, share in wanted.items() if v in loaded}
    total = sum(kept.values())
    return {v: share * 100.0 / total for v, share in kept.items()} if total else {}


def _check_signature(
    name: str, served: Served, signature: tuple[list[TensorSpec], list[TensorSpec]], what: str
) -> None:
    """A model's versions share one config (as on Triton): what a load brings must have
    the inputs and outputs of the versions serving, or it would break them."""
    if not served.versions:
        return
    current = next(iter(served.versions.values())).model
    serving = (current.inputs, current.outputs)
    if signature == serving:
        return
    difference = "; ".join(
        f"{kind}: serving {_specs(old)}, {what} has {_specs(new)}"
        for kind, old, new in zip(("inputs", "outputs"), serving, signature, strict=True)
        if old != new
    )
    raise ProtocolError(
        f"{what} of '{name}' has a different signature from the versions serving "
        f"({difference}); versions of one model share one signature. Serve it under a new "
        "name, or unload the model first",
        status=409,
    )


def _specs(specs: Iterable[object]) -> str:
    return ", ".join(str(s) for s in specs) or "none"


async def retire(versions: Iterable[Version]) -> None:
    """Let each version finish what it has queued, then stop it."""
    for loaded in list(versions):
        await loaded.scheduler.close()
