"""The server's pure layers: model configs, traffic policy, repository paths, batching."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from nbdeploy import ConfigError, TensorSpec
from nbdeploy.errors import ProtocolError
from nbdeploy.server import config as cfg
from nbdeploy.server import traffic as tr
from nbdeploy.server.batcher import Scheduler
from nbdeploy.server.repository import Repository, check_model_name
from nbdeploy.server.runtime import check_feed
from nbdeploy.server.stats import VersionStats

X = TensorSpec("x", "float32", ("batch", 3))
Y = TensorSpec("y", "int64", ("batch",))


def test_config_drops_the_batch_dimension_and_round_trips_through_text() -> None:
    config = cfg.build_config("m", [X], [Y], instances=2, preferred_batch_sizes=[4, 8],
                              max_queue_delay_us=100, parameters={"session.x": "1"})  # fmt: skip
    assert config.max_batch_size == cfg.DEFAULT_MAX_BATCH_SIZE
    assert list(config.input[0].dims) == [3] and list(config.output[0].dims) == []
    again = cfg.from_text(cfg.to_text(config))
    assert again == config
    assert cfg.signature(again) == ([X], [Y])
    assert cfg.session_entries(again) == {"session.x": "1"}
    assert cfg.to_json(config)["input"][0]["dims"] == [3]  # numbers, as Triton writes them
    assert cfg.from_json(__import__("json").dumps(cfg.to_json(config))) == config


def test_config_refuses_batching_a_model_without_a_batch_dimension() -> None:
    fixed = TensorSpec("x", "float32", (1, 3))
    assert cfg.build_config("m", [fixed], [Y]).max_batch_size == 0
    with pytest.raises(ConfigError, match="max_batch_size=0"):
        cfg.build_config("m", [fixed], [Y], max_batch_size=8)
    with pytest.raises(ConfigError, match="not a valid model config"):
        cfg.from_text("max_batch_size: 'many'")


def test_traffic_canary_promote_rollback() -> None:
    split = tr.canary({1: 100.0}, 2, 10)
    assert split == {1: 90.0, 2: 10.0}
    assert tr.promote(split) == {1: 0.0, 2: 100.0}
    assert tr.rollback(split, [1, 2]) == {1: 100.0}
    assert tr.rollback({2: 100.0}, [1, 2]) == {1: 100.0}  # previous reloaded from disk
    with pytest.raises(ProtocolError, match="nothing to roll back"):
        tr.rollback({1: 100.0}, [1])
    with pytest.raises(ProtocolError, match="between 0 and 100"):
        tr.canary({1: 100.0}, 2, 100)
    with pytest.raises(ProtocolError, match=r"not in the repository"):
        tr.check({7: 1.0}, [1, 2])
    draws = [tr.pick({1: 75.0, 2: 25.0}) for _ in range(4000)]
    assert 0.2 < draws.count(2) / len(draws) < 0.3


def test_version_policy_like_triton() -> None:
    assert tr.by_policy("latest", 1, [], [1, 2, 3]) == {3: 100.0}
    assert tr.by_policy("all", 0, [], [1, 2]) == {1: 0.0, 2: 100.0}
    assert tr.by_policy("specific", 0, [1], [1, 2]) == {1: 100.0}


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x" * 200, "a..b"])
def test_model_names_that_could_escape_are_refused(name: str) -> None:
    with pytest.raises(ProtocolError, match="invalid model name"):
        check_model_name(name)


@pytest.mark.parametrize(
    ("path", "message"),
    [("../evil", "inside the model's folder"), ("/etc/passwd", "inside the model's folder"),
     ("1/../../x", "inside the model's folder"), ("a\\b", "inside the model's folder"),
     ("traffic.json", "inside the model's folder"), ("1/a\0b", "control character"),
     ("1/" + "x" * 300, "too long")],
)  # fmt: skip
def test_file_overrides_stay_in_the_model_folder(tmp_path: Path, path: str, message: str) -> None:
    repo = Repository(tmp_path)
    with pytest.raises(ProtocolError, match=message):
        repo.stage({path: b"x"})
    assert not any(repo.staging_area.glob("*")) and not (tmp_path / "m").exists()


def test_file_overrides_do_not_follow_links(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    (tmp_path / "outside").mkdir()
    (tmp_path / "repo" / "m").mkdir(parents=True)
    (tmp_path / "repo" / "m" / "1").symlink_to(tmp_path / "outside")
    staging = repo.stage({"1/model.onnx": b"x"})
    with pytest.raises(ProtocolError, match="link"):
        repo.commit("m", {1: staging / "1"}, None)
    assert not any((tmp_path / "outside").iterdir())


def test_a_linked_model_folder_is_neither_written_nor_served(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    (tmp_path / "outside").mkdir()
    (tmp_path / "repo" / "m").symlink_to(tmp_path / "outside")
    with pytest.raises(ProtocolError, match="is a link"):
        repo.save_traffic("m", {1: 100.0})
    assert not any((tmp_path / "outside").iterdir())


def test_check_feed_names_the_input_at_fault() -> None:
    good = {"x": np.zeros((2, 3), np.float32)}
    assert check_feed([X], good, 8) == 2
    cases = {
        "expected 1 inputs but got 0 inputs": {},
        "unexpected inference input 'z'": {**good, "z": np.zeros(1, np.float32)},
        "data-type is 'FP64'": {"x": np.zeros((2, 3))},
        r"got \[2,4\]": {"x": np.zeros((2, 4), np.float32)},
        "batch size 9": {"x": np.zeros((9, 3), np.float32)},
    }
    for message, feed in cases.items():
        with pytest.raises(ProtocolError, match=message):
            check_feed([X], feed, 8)


def _scheduler(run: object, max_batch: int, delay_us: int, instances: int = 1) -> Scheduler:
    config = cfg.build_config("m", [X], [X], max_batch_size=max_batch, instances=instances,
                              max_queue_delay_us=delay_us)  # fmt: skip
    return Scheduler(run, config, VersionStats(), ThreadPoolExecutor(4))  # type: ignore[arg-type]


def test_dynamic_batching_merges_concurrent_requests_and_splits_answers() -> None:
    sizes: list[int] = []

    def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes.append(len(feed["x"]))
        return {"x": feed["x"] * 2}

    async def scenario() -> list[dict[str, np.ndarray]]:
        scheduler = _scheduler(run, 16, delay_us=20_000)
        feeds = [np.full((1 + i % 2, 3), i, np.float32) for i in range(8)]
        answers = await asyncio.gather(*(scheduler.infer({"x": f}, len(f)) for f in feeds))
        await scheduler.close()
        for feed, answer in zip(feeds, answers, strict=True):
            np.testing.assert_array_equal(answer["x"], feed * 2)
        return answers

    asyncio.run(scenario())
    assert sum(sizes) == 12 and len(sizes) < 8  # merged, nothing lost


@pytest.mark.parametrize(("instances", "inline"), [(1, True), (2, False)])
def test_a_fast_model_with_one_instance_runs_on_the_loop(instances: int, inline: bool) -> None:
    """The hop to a thread costs more than a small model's run: with one instance in the
    process, such runs stay on the loop; with several, they go to threads to overlap."""
    threads: list[int] = []

    def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        threads.append(threading.get_ident())
        return {"x": feed["x"]}

    async def scenario() -> None:
        scheduler = _scheduler(run, 8, delay_us=0, instances=instances)
        for _ in range(60):  # the first runs go to a thread, until the model shows it is fast
            await scheduler.infer({"x": np.ones((1, 3), np.float32)}, 1)
        await scheduler.close()

    asyncio.run(scenario())
    on_loop = threads[-10:].count(threading.get_ident())
    assert on_loop == (10 if inline else 0)


def test_requests_with_different_item_shapes_are_not_merged() -> None:
    seen: list[tuple[int, ...]] = []
    lock = threading.Lock()

    def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with lock:
            seen.append(feed["x"].shape)
        return {"x": feed["x"]}

    async def scenario() -> None:
        scheduler = _scheduler(run, 16, delay_us=5_000)
        a, b = np.zeros((1, 3), np.float32), np.zeros((1, 4), np.float32)
        out = await asyncio.gather(scheduler.infer({"x": a}, 1), scheduler.infer({"x": b}, 1))
        assert out[0]["x"].shape == (1, 3) and out[1]["x"].shape == (1, 4)
        await scheduler.close()

    asyncio.run(scenario())
    assert sorted(seen) == [(1, 3), (1, 4)]


def test_a_failing_run_fails_only_its_requests() -> None:
    def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if feed["x"].sum() < 0:
            raise ValueError("negative input")
        return {"x": feed["x"]}

    async def scenario() -> None:
        scheduler = _scheduler(run, 0, delay_us=0)
        with pytest.raises(ValueError, match="negative"):
            await scheduler.infer({"x": -np.ones((1, 3), np.float32)}, 0)
        ok = await scheduler.infer({"x": np.ones((1, 3), np.float32)}, 0)
        assert ok["x"].sum() == 3
        await scheduler.close()

    asyncio.run(scenario())


def test_tf_serving_bodies_keep_shapes_and_formats() -> None:
    import json

    from nbdeploy.server.tfserving import decode_predict, encode_predict

    request, rows = decode_predict(b'{"instances": [[1, 2, 3], [4, 5, 6]]}', [X])
    assert rows and request.inputs["x"].dtype == np.float32 and request.inputs["x"].shape == (2, 3)
    request, rows = decode_predict(b'{"inputs": {"x": [[1, 2, 3]]}}', [X])
    assert not rows and request.inputs["x"].shape == (1, 3)
    strings = {"label": np.array([[b"a", b"b"], [b"c", b"d"]], dtype=object)}
    assert json.loads(encode_predict(strings, True)) == {"predictions": [["a", "b"], ["c", "d"]]}
    two = {"label": np.array([b"a", b"b"], dtype=object), "p": np.array([[0.5, 0.5], [1.0, 0.0]])}
    assert json.loads(encode_predict(two, True))["predictions"][1] == {
        "label": "b",
        "p": [1.0, 0.0],
    }
    assert json.loads(encode_predict(two, False))["outputs"]["label"] == ["a", "b"]
    bad = {
        b"[]": "either 'instances' or 'inputs'",
        b'{"instances": []}': "non-empty list",
        b'{"instances": [["a", "b", "c"]]}': "not a regular array of float32",
    }
    for body, message in bad.items():
        with pytest.raises(ProtocolError, match=message):
            decode_predict(body, [X])


def _queued(max_size: int = 0, timeout_us: int = 0, override: bool = False) -> Scheduler:
    """One instance whose runs take 0.2 s, with a Triton queue policy."""
    config = cfg.build_config("m", [X], [X], max_batch_size=8)
    policy = config.dynamic_batching.default_queue_policy
    policy.max_queue_size, policy.default_timeout_microseconds = max_size, timeout_us
    policy.allow_timeout_override = override
    policy.timeout_action = policy.REJECT

    def slow(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(0.2)
        return dict(feed)

    return Scheduler(slow, config, VersionStats(), ThreadPoolExecutor(2))


def _outcomes(
    policy: dict[str, int | bool], count: int, timeout_us: int | None = None
) -> list[str]:
    """What ``count`` requests, sent 10 ms apart, get from a slow queued scheduler."""

    async def one(scheduler: Scheduler, i: int) -> str:
        await asyncio.sleep(0.01 * i)  # in order: the first runs, the next ones queue
        try:
            await scheduler.infer({"x": np.ones((1, 3), np.float32)}, 1, timeout_us)
        except ProtocolError as err:
            assert err.status == 503
            return str(err).split(" (")[0].split(" while")[0]
        return "ok"

    async def all_of_them() -> list[str]:
        scheduler = _queued(**policy)  # type: ignore[arg-type]
        try:
            return list(await asyncio.gather(*(one(scheduler, i) for i in range(count))))
        finally:
            await scheduler.close()

    return asyncio.run(all_of_them())


def test_a_full_queue_rejects_as_triton_does() -> None:
    full = "Exceeds maximum queue size"
    assert _outcomes({"max_size": 1}, 4) == ["ok", "ok", full, full]
    assert _outcomes({}, 4) == ["ok"] * 4  # no limit set


def test_a_request_that_waits_past_its_timeout_is_rejected() -> None:
    assert _outcomes({"timeout_us": 100_000}, 2) == ["ok", "Request timeout expired"]
    allowed = {"timeout_us": 100_000, "override": True}
    assert _outcomes(allowed, 2, timeout_us=2_000_000) == ["ok", "ok"]
