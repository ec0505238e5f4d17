"""What the server does, with no HTTP or gRPC in sight: models, versions, traffic,
inference, statistics. The front ends translate requests into these calls and
:class:`ProtocolError` s into their status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import ProtocolError
from ..types import TensorSpec
from . import config as cfg
from . import lineage
from . import traffic as tr
from .classification import classify
from .codecs import (
    InferRequest,
    decode_raw,
    decode_raw_binary,
    encode_raw,
)
from .faults import slow_restore
from .layout import EXTRAS
from .loading import Change, Loader, Served, Version, retire
from .metrics import SharedCounters, triton_metrics
from .parameters import decode_shares, version_number
from .peers import Peers
from .repository import Repository, check_model_name
from .runtime import check_feed
from .settings import Setting, Settings
from .shared_memory import SharedMemory
from .stats import VersionStats

log = logging.getLogger(__name__)

__all__ = ["DataPlane", "InferResult"]

# Exactly the extensions this server implements (tools decide by them).
EXTENSIONS = [
    "classification", "model_repository", "schedule_policy", "model_configuration",
    "binary_tensor_data", "statistics", "trace", "logging", "system_shared_memory",
    "nbdeploy_traffic", "nbdeploy_overview",
]  # fmt: skip


@dataclass
class InferResult:
    """One answered request: the version that answered and the outputs asked for."""

    model: str
    version: str
    outputs: dict[str, np.ndarray]
    in_shm: dict[str, int] = field(default_factory=dict)  # outputs written to shared memory


class DataPlane:
    """All models of one repository, loaded and answering.

    Args:
        repository: The on-disk repository (the server's state).
        threads: Worker threads for model runs.
        peers: The channel to the server's other worker processes: every change to
            shared state (models, traffic, shared memory regions, settings) is applied
            by all of them before the call that made it returns.
        session_threads: onnxruntime's intra-op threads per session (0: its default).
    """

    def __init__(
        self,
        repository: Repository,
        *,
        threads: int = 8,
        peers: Peers | None = None,
        session_threads: int = 0,
    ) -> None:
        self.repository = repository
        self.peers = peers  # the server's other worker processes, if it has any
        self._models: dict[str, Served] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._failures: dict[str, str] = {}  # models on disk that are not served, and why
        self._restoring: list[str] = []  # models a restart has yet to bring back, in order
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="nbdeploy-run")
        self.counters = SharedCounters()  # every worker's counts, summed
        workers = peers.place.count if peers is not None else 1
        self._loader = Loader(repository, self._executor, self.counters,
                              session_threads=session_threads, workers=workers)  # fmt: skip
        self.settings = Settings()  # trace and log settings, as Triton answers them
        self.shm = SharedMemory()  # registered system shared memory regions

    # -- lifecycle -------------------------------------------------------------------

    def begin_restore(self, *, clear_staging: bool = True) -> list[str]:
        """Note every model of the repository as loading (before the server listens, so
        no request finds one missing); :meth:`restore` then brings them back. Files left
        in the staging area by a killed server go first (a server's workers leave that
        to their supervisor: a worker starting late would drop a client's upload)."""
        if clear_staging:
            self.repository.clear_staging()
        self._restoring = list(self.repository.names())
        return list(self._restoring)

    async def restore(self) -> None:
        """Load every model of the repository as it was last served, version by version,
        one model at a time, each ready as soon as it is loaded (the server is live and
        answers meanwhile: Triton's way): what is damaged is skipped and reported (log,
        index, status); the rest serve."""
        if not self._restoring:
            self.begin_restore(clear_staging=self.peers is None)
        while self._restoring:
            name = self._restoring[0]
            async with self._locks[name]:  # a load or unload meanwhile waits for it
                if name not in self._restoring:  # another worker's change brought it back
                    continue
                try:
                    await slow_restore()
                    served = await self._loader.restore(name)
                except ProtocolError as err:
                    self._failures[name] = str(err)
                    log.error("could not restore model %s: %s", name, err)
                else:
                    if served is not None and name not in self._models:
                        self._models[name] = served
                finally:
                    self._restoring.remove(name)
        if self.peers is not None:
            self.peers.mark_ready()

    async def close(self) -> None:
        self.shm.close()
        for name in list(self._models):
            await retire(self._models.pop(name).versions.values())
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- health and metadata -----------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "nbdeploy", "version": __version__, "extensions": EXTENSIONS}

    def ready(self) -> bool:
        """Ready once every model a restart brings back is loaded (Triton's strict
        readiness), in every worker; live from the start."""
        return not self._restoring and (self.peers is None or self.peers.all_ready())

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self._version(name, version)
        except ProtocolError:
            return False
        return True

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        served, chosen = self._served(name), self._version(name, version)
        config = chosen.model.config
        lead = [-1] if config.max_batch_size > 0 else []

        def tensors(items: Any) -> list[dict[str, Any]]:
            return [
                {"name": t.name, "datatype": cfg.datatype_name(t.data_type),
                 "shape": lead + list(t.dims)}
                for t in items
            ]  # fmt: skip

        versions = [str(v) for v in sorted(served.versions)] if not version else [version]
        return {
            "name": name,
            "versions": versions,
            "platform": config.platform or config.backend,
            "inputs": tensors(config.input),
            "outputs": tensors(config.output),
        }

    def raw_request(self, name: str, version: str, body: bytes) -> InferRequest:
        """Triton's raw binary request (``Inference-Header-Content-Length: 0``): the body
        is the one input's bytes; its shape comes from the config (batch 1), all outputs
        come back as binary data."""
        model = self._version(name, version).model
        return decode_raw_binary(body, model.inputs, model.config.max_batch_size > 0, name)

    def inputs(self, name: str, version: str = "") -> list[TensorSpec]:
        """The input specs of a model version (the serving one when none is named)."""
        return self._version(name, version).model.inputs

    def model_config(self, name: str, version: str = "") -> cfg.ModelConfig:
        return self._version(name, version).model.config

    def trace_settings(
        self, name: str = "", changes: Mapping[str, object] | None = None
    ) -> dict[str, Setting]:
        """Triton's trace settings, globally or for one model; ``changes`` updates them."""
        if name:
            self._served(name)  # 404 for unknown models
        if changes is None:
            return self.settings.trace_settings(name)
        return self.settings.update_trace(changes, name)

    def traffic(self, name: str) -> dict[str, float]:
        return {str(v): share for v, share in sorted(self._served(name).traffic.items())}

    def statistics(self, name: str = "", version: str = "") -> dict[str, Any]:
        if name:
            self._version(name, version)  # 404s for unknown models and versions
        rows = [
            stats.to_dict(model, number)
            for model, number, stats in self._rows()
            if (not name or model == name) and (not version or number == version)
        ]
        return {"model_stats": rows}

    async def metrics(self) -> str:
        """Prometheus text under Triton's names: counts and latencies over every worker."""
        return triton_metrics(self._rows(await self._recent()))

    def _rows(
        self, recent: Mapping[str, list[dict[str, Any]]] | None = None
    ) -> Iterator[tuple[str, str, VersionStats]]:
        """Each served version's statistics: counts over every worker, and the recent
        latencies of those in ``recent`` (other workers', by :func:`_key`) with this one's."""
        totals = self.counters.totals()
        for name, served in sorted(self._models.items()):
            for number, loaded in sorted(served.versions.items()):
                stats = loaded.stats.with_counts(totals.get((name, str(number), loaded.load)))
                others = (recent or {}).get(_key(name, number, loaded.load), [])
                yield name, str(number), stats.merged(others)

    async def _recent(self) -> dict[str, list[dict[str, Any]]]:
        """The other workers' recent latencies and windows, by version (:func:`_key`)."""
        if self.peers is None:
            return {}
        gathered: dict[str, list[dict[str, Any]]] = {}
        for answer in await self.peers.ask_all({"op": "recent"}):
            for key, snapshot in answer.items():
                gathered.setdefault(key, []).append(snapshot)
        return gathered

    def _snapshots(self) -> dict[str, dict[str, Any]]:
        return {_key(name, number, loaded.load): loaded.stats.snapshot()
                for name, served in self._models.items()
                for number, loaded in served.versions.items()}  # fmt: skip

    # -- inference ----------------------------------------------------------------------

    async def infer(self, name: str, version: str, request: InferRequest) -> InferResult:
        """Run one request on the version asked for, or on one drawn by the traffic split."""
        served = self._served(name)
        if not version and served.traffic:
            version = str(tr.pick(served.traffic))
        loaded = self._version(name, version)
        started = time.perf_counter_ns()
        try:
            self._read_shared_inputs(request)
            outputs = await self._run(name, loaded, request)
            in_shm = self._write_shared_outputs(request, outputs)
        except BaseException:
            loaded.stats.record_request(False, time.perf_counter_ns() - started)
            raise
        batch = next(iter(outputs.values())).shape[0] if loaded.model.config.max_batch_size else 1
        loaded.stats.record_request(True, time.perf_counter_ns() - started, batch)
        return InferResult(name, str(loaded.number), outputs, in_shm)

    def _read_shared_inputs(self, request: InferRequest) -> None:
        for tensor, shared in request.shm_inputs.items():
            raw = self.shm.view(tensor, shared.ref)
            request.inputs[tensor] = decode_raw(tensor, raw, shared.datatype, shared.shape)

    def _write_shared_outputs(
        self, request: InferRequest, outputs: Mapping[str, np.ndarray]
    ) -> dict[str, int]:
        written = {}
        for tensor, ref in request.shm_outputs.items():
            array = np.asarray(outputs[tensor])
            raw = encode_raw(array)[1] if array.dtype.kind in "OSU" else None
            written[tensor] = self.shm.write(tensor, ref, array, raw)
        return written

    async def _run(self, name: str, loaded: Version, request: InferRequest) -> dict[str, Any]:
        model = loaded.model
        unknown = sorted(set(request.outputs) - set(model.output_names))
        if unknown:
            raise ProtocolError(f"unexpected inference output '{unknown[0]}' for model "
                                f"'{name}'; the model has {model.output_names}")  # fmt: skip
        batch = check_feed(model.inputs, request.inputs, model.config.max_batch_size, name)
        try:
            outputs = await loaded.scheduler.infer(request.inputs, batch, request.timeout_us)
        except ProtocolError:  # the queue policy refused it
            raise
        except Exception as err:  # onnxruntime's own complaint about this input
            raise ProtocolError(
                f"model '{name}' version {loaded.number} could not run this input: {err}"
            ) from err
        batched = model.config.max_batch_size > 0
        for output, count in request.classes.items():
            outputs[output] = classify(outputs[output], count, model.labels.get(output),
                                       batched=batched)  # fmt: skip
        wanted = request.outputs or outputs
        return {key: outputs[key] for key in wanted}

    # -- repository ---------------------------------------------------------------------

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: every model version on disk and its state."""
        rows = []
        for name in self.repository.names():
            served = self._models.get(name)
            try:
                on_disk, refusal = self.repository.versions(name), ""
            except ProtocolError as err:  # a linked model folder
                on_disk, refusal = [], str(err)
            for number in on_disk or [0]:
                ready = served is not None and number in served.versions
                if ready_only and not ready:
                    continue
                reason = "" if ready else refusal or self._reason(name, number)
                state = (
                    "READY" if ready else "LOADING" if name in self._restoring else "UNAVAILABLE"
                )
                rows.append({"name": name, "version": str(number) if number else "",
                             "state": state, "reason": reason})  # fmt: skip
        return rows

    async def overview(self) -> list[dict[str, Any]]:
        """Per model, each version that serves or failed to: traffic, readiness, request
        and failure counts, p50/p95 latency (ms), over every worker. One call for a
        dashboard's poll."""
        models = []
        rows = {(name, version): stats for name, version, stats in
                self._rows(await self._recent())}  # fmt: skip
        for name in self.repository.names():
            served = self._models.get(name)
            if served is None:
                reason = self._reason(name, 0)
                models.append({"name": name, "ready": False, "reason": reason, "versions": []})
                continue
            folder = self.repository.folder(name)
            versions = [_version_row(n, served.traffic.get(n, 0.0), v, folder / str(n),
                                     rows.get((name, str(n))))
                        for n, v in sorted(served.versions.items())]  # fmt: skip
            versions += [{**_version_row(n, 0.0, None, None), "ready": False, "reason": why}
                         for n, why in sorted(served.damaged.items())]  # fmt: skip
            models.append({"name": name, "ready": True, "reason": "", "versions": versions})
        return models

    def extra(self, name: str, version: str, key: str) -> Path:
        """The file of one of a loaded version's extras (``layout.EXTRAS``): its example
        request or the comparison report that chose it; 404 naming what exists if absent."""
        number = self._version(name, version).number
        folder = self.repository.folder(name) / str(number)
        present = lineage.extras(folder)
        if key not in present:
            have = ", ".join(present) or "none"
            raise ProtocolError(f"model '{name}' version {number} has no {key} "
                                f"(its extras: {have})", status=404)  # fmt: skip
        return folder / EXTRAS[key]

    def _loading_message(self, name: str) -> str:
        ahead = self._restoring.index(name)
        where = "loading now" if ahead == 0 else f"{ahead} model(s) load before it"
        return (f"model '{name}' is still loading after the server restarted ({where}); "
                f"retry in a moment, or poll /v2/models/{name}/ready")  # fmt: skip

    def _reason(self, name: str, number: int) -> str:
        served = self._models.get(name)
        if served is None and name in self._restoring:
            return "loading after a restart"
        if served is None:
            return self._failures.get(name, "unloaded")
        return served.damaged.get(number, "not loaded (no traffic)")

    async def load(
        self,
        name: str,
        *,
        config_json: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        staged: str | None = None,
        version: int | None = None,
        traffic: Mapping[int, float] | None = None,
        canary: float | None = None,
    ) -> int | None:
        """Load (or reload) a model; the versions serving now keep serving if it fails.

        Args:
            name: Model name.
            config_json: A config that replaces ``config.pbtxt`` (Triton's ``config``).
            files: Files to add under the model's folder (Triton's ``file:`` overrides),
                e.g. ``{"2/model.onnx": b"..."}``.
            staged: The name of a folder a client wrote under the repository's staging
                area, holding one new version's files; the server moves it in.
            version: The number the staged version must get (default: the next one).
            traffic: Shares by version; the versions named are the ones loaded.
            canary: Percent of traffic for the newest version, the rest to the current one.

        Returns:
            The number given to the staged version (``None`` without ``staged``).
        """
        check_model_name(name)
        load = f"{time.time_ns():x}"  # names this load's counters (in every worker)
        async with self._shared_lock(name), self._locks[name]:
            served = self._models.get(name) or Served()
            version_files = self.repository.staged(staged) if staged is not None else None
            staging = self._stage(name, files) if files else None
            change = Change(config_json, staging, version_files, version, traffic, canary)
            try:
                number, fresh = await self._loader.apply(name, served, change, load)
            except BaseException as err:
                if name not in self._models and (self.repository.root / name).is_dir():
                    self._failures[name] = str(err)
                raise
            finally:  # what was not moved into the model's folder goes
                for leftover in (staging, version_files):
                    if leftover is not None:
                        shutil.rmtree(leftover, ignore_errors=True)
            self._models[name] = served
            self._failures.pop(name, None)
            await self._tell({"op": "sync", "model": name, "reopen": sorted(fresh), "load": load})
            return number

    def _stage(self, name: str, files: Mapping[str, bytes]) -> Path:
        try:
            return self.repository.stage(files)
        except ProtocolError as err:  # Triton's wording first: clients match on it
            raise ProtocolError(f"failed to load '{name}', failed to poll from model "
                                f"repository: {err}", status=err.status) from err  # fmt: skip

    async def unload(self, name: str) -> None:
        """Stop serving a model; its files stay, and a restart does not bring it back."""
        self._served(name)  # a 404 before anything else
        async with self._shared_lock(name), self._locks[name]:
            served = self._served(name)
            self.repository.save_traffic(name, {})  # first: a failed write changes nothing
            self._models.pop(name, None)
            await retire(served.versions.values())
            await self._tell({"op": "sync", "model": name, "reopen": [], "load": ""})

    async def set_traffic(self, name: str, action: str, shares: Mapping[str, Any]) -> None:
        """``promote``, ``rollback``, or explicit ``shares`` by version."""
        served = self._served(name)
        if action == "promote":
            target = tr.promote(served.traffic)
        elif action == "rollback":
            target = tr.rollback(served.traffic, self.repository.versions(name))
        elif action == "set":
            target = decode_shares(dict(shares))
        else:
            raise ProtocolError(f"unknown traffic action {action!r}; use promote, rollback, set")
        await self.load(name, traffic=target)

    # -- state shared with the other workers --------------------------------------------

    async def register_shm(self, name: str, key: object, offset: object, size: object) -> None:
        """Register a system shared memory region, in every worker."""
        self.shm.register(name, key, offset, size)
        await self._tell({"op": "shm_register", "name": name, "key": key, "offset": offset,
                          "byte_size": size})  # fmt: skip

    async def unregister_shm(self, name: str = "") -> None:
        """Forget one region (or all), in every worker."""
        self.shm.unregister(name)
        await self._tell({"op": "shm_unregister", "name": name})

    async def update_log(self, changes: Mapping[str, object]) -> dict[str, Setting]:
        """Change the log settings, in every worker."""
        doc = self.settings.update_log(changes)
        await self._tell({"op": "log", "changes": dict(changes)})
        return doc

    async def update_trace(self, name: str, changes: Mapping[str, object]) -> dict[str, Setting]:
        """Change the trace settings (globally, or one model's), in every worker."""
        doc = self.trace_settings(name, changes)
        await self._tell({"op": "trace", "model": name, "changes": dict(changes)})
        return doc

    async def apply_peer_change(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Apply what another worker changed and told this one, or answer its question
        (:mod:`.peers`)."""
        op = message["op"]
        if op == "sync":
            await self._refresh(message["model"], set(message["reopen"]), message["load"])
        elif op == "recent":
            return self._snapshots()
        elif op == "shm_register":
            self.shm.register(message["name"], message["key"], message["offset"],
                              message["byte_size"])  # fmt: skip
        elif op == "shm_unregister":
            self.shm.unregister(message["name"])
        elif op == "log":
            self.settings.update_log(message["changes"])
        elif op == "trace":
            self.settings.update_trace(message["changes"], message["model"])
        else:
            raise ProtocolError(f"unknown message from another worker: {op!r}")
        return None

    async def _refresh(self, name: str, reopen: set[int], load: str) -> None:
        async with self._locks[name]:
            served, stopped = await self._loader.refresh(name, self._models.get(name), reopen,
                                                         load)  # fmt: skip
            if served is None:
                self._models.pop(name, None)
            else:
                self._models[name] = served
                self._failures.pop(name, None)
            if name in self._restoring:
                self._restoring.remove(name)
            await retire(stopped)  # after the swap: requests that chose them are answered

    def _shared_lock(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        if self.peers is None:
            return contextlib.nullcontext()
        return self.peers.model_lock(name)

    async def _tell(self, message: dict[str, Any]) -> None:
        if self.peers is not None:
            await self.peers.tell_all(message)

    # -- lookups ------------------------------------------------------------------------

    def _served(self, name: str) -> Served:
        served = self._models.get(name)
        if served is None and name in self._restoring:
            raise ProtocolError(self._loading_message(name), status=503)
        if served is None or not served.versions:
            raise ProtocolError(f"Request for unknown model: '{name}' is not found", status=404)
        return served

    def _version(self, name: str, version: str) -> Version:
        served = self._served(name)
        if not version:
            return served.versions[max(v for v, s in served.traffic.items() if s > 0)]
        number = version_number(version)
        if number not in served.versions:
            raise ProtocolError(
                f"Request for unknown model: '{name}' version {number} is not found (loaded "
                f"versions: {sorted(served.versions)})",
                status=404,
            )
        return served.versions[number]


def _key(name: str, number: int, load: str) -> str:
    """One load of one version, as a JSON key between workers."""
    return f"{name}\n{number}\n{load}"


def _version_row(
    number: int,
    share: float,
    version: Version | None,
    folder: Path | None,
    stats: VersionStats | None = None,
) -> dict[str, Any]:
    """One version in the overview: counts and latency over every worker (``stats``), the
    last minutes window by window, and where it came from."""
    stats = stats or (version.stats if version is not None else VersionStats())
    p50, p95 = (None if us is None else round(us / 1000, 3) for us in stats.latency_us((0.5, 0.95)))
    origin = version.model.origin if version is not None else {}
    extras = lineage.extras(folder) if folder is not None else []
    return {"version": number, "ready": True, "reason": "", "traffic": share,
            "requests": stats.success.count, "failures": stats.fail.count,
            "p50_ms": p50, "p95_ms": p95, "requests_per_s": stats.rate(),
            "loaded_at": round(stats.loaded_at, 3), "history": stats.history(),
            "source": origin.get("source", ""), "steps": origin.get("steps", []),
            "parity": origin.get("parity", ""),
            "extras": extras}  # fmt: skip
