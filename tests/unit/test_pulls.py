"""The shared image puller: pull policy, one pull per image, the parallel bound, the deadline, progress.

A small fake image service stands in for the engine (pulls wait on per-image gates); the Docker side of
the same behaviour is tests/integration/test_pulls.py.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest
from structlog.testing import capture_logs

from nodeagent import errors
from nodeagent.agent import pulls
from nodeagent.runtime import docker as docker_rt
from nodeagent.runtime import memory
from tests.support.waiting import wait_for

Progress = Callable[[int, int], None]


class FakeImages:
    """image_present / pull, where a pull of an image with a closed gate waits for it."""

    def __init__(self, present: tuple[str, ...] = ()) -> None:
        self.present = set(present)
        self.lock = threading.Lock()
        self.pulls: list[str] = []
        self.active = 0
        self.max_active = 0
        self.gates: dict[str, threading.Event] = {}
        self.started: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.fail: dict[str, Exception] = {}
        self.callbacks: dict[str, Progress] = {}

    def gate(self, *images: str) -> None:
        for image in images:
            self.gates[image] = threading.Event()

    def image_present(self, image: str) -> bool:
        return image in self.present

    def pull(self, image: str, on_progress: Progress | None = None) -> None:
        with self.lock:
            self.pulls.append(image)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            if on_progress is not None:
                self.callbacks[image] = on_progress
        self.started[image].set()
        try:
            gate = self.gates.get(image)
            if gate is not None:
                assert gate.wait(10), f"test never opened the gate of {image}"
            if image in self.fail:
                raise self.fail[image]
            self.present.add(image)
        finally:
            with self.lock:
                self.active -= 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Caller(threading.Thread):
    """`ensure` in a thread of its own (a pod worker); `result` once it returned."""

    def __init__(self, puller: pulls.ImagePuller, image: str, policy: str = "IfNotPresent") -> None:
        super().__init__(daemon=True)
        self.puller, self.image, self.policy = puller, image, policy
        self.result: pulls.PullFailure | None = None
        self.error: BaseException | None = None
        self.returned = threading.Event()
        self.start()

    def run(self) -> None:
        try:
            self.result = self.puller.ensure(self.image, self.policy)
        except BaseException as exc:
            self.error = exc
        self.returned.set()

    def get(self, timeout: float = 10.0) -> pulls.PullFailure | None:
        assert self.returned.wait(timeout), f"ensure({self.image}) did not return"
        if self.error is not None:
            raise self.error
        return self.result


def waiters(puller: pulls.ImagePuller, image: str) -> int:
    pull = puller._pulls.get(image)
    return 0 if pull is None else pull.waiters


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Waiting callers re-read a fake clock every 10 ms instead of every second."""
    monkeypatch.setattr(pulls, "POLL", 0.01)
    yield


# --- pull policy ------------------------------------------------------------------------------------


def test_never_uses_a_present_image_and_never_pulls() -> None:
    images = FakeImages(present=("a:1",))
    puller = pulls.ImagePuller(images)
    assert puller.ensure("a:1", "Never") is None
    assert puller.ensure("b:1", "Never") == pulls.PullFailure(
        "ErrImageNeverPull", 'Container image "b:1" is not present with pull policy of Never'
    )
    assert images.pulls == []


def test_if_not_present_pulls_only_a_missing_image_and_always_pulls_every_time() -> None:
    images = FakeImages(present=("a:1",))
    puller = pulls.ImagePuller(images)
    assert puller.ensure("a:1", "IfNotPresent") is None
    assert images.pulls == []
    assert puller.ensure("b:1", "IfNotPresent") is None
    assert images.pulls == ["b:1"]
    assert puller.ensure("b:1", "IfNotPresent") is None
    assert images.pulls == ["b:1"]
    assert puller.ensure("a:1", "Always") is None
    assert puller.ensure("a:1", "Always") is None
    assert images.pulls == ["b:1", "a:1", "a:1"]


def test_a_failed_pull_is_err_image_pull_with_the_runtime_message_and_is_not_cached() -> None:
    images = FakeImages()
    images.fail["b:1"] = errors.ImagePullError("pull b:1: manifest unknown")
    puller = pulls.ImagePuller(images)
    assert puller.ensure("b:1", "IfNotPresent") == pulls.PullFailure(
        "ErrImagePull", "pull b:1: manifest unknown"
    )
    del images.fail["b:1"]
    assert puller.ensure("b:1", "IfNotPresent") is None  # the caller's backoff decides when to retry
    assert images.pulls == ["b:1", "b:1"]
    assert puller.in_progress() == {}


def test_an_engine_error_is_raised_to_every_caller_as_the_runtime_raised_it() -> None:
    images = FakeImages()
    images.fail["b:1"] = errors.RuntimeUnavailable("pull b:1: docker engine unavailable")
    puller = pulls.ImagePuller(images)
    with pytest.raises(errors.RuntimeUnavailable, match="engine unavailable"):
        puller.ensure("b:1", "IfNotPresent")


# --- one pull per image, the parallel bound ---------------------------------------------------------


@pytest.mark.parametrize("outcome", ["ok", "failed"])
def test_concurrent_callers_of_one_image_share_one_pull_and_its_result(outcome: str) -> None:
    images = FakeImages()
    images.gate("b:1")
    if outcome == "failed":
        images.fail["b:1"] = errors.ImagePullError("pull b:1: denied")
    puller = pulls.ImagePuller(images)
    callers = [Caller(puller, "b:1", policy) for policy in ("IfNotPresent", "Always", "IfNotPresent")]
    wait_for(lambda: waiters(puller, "b:1") == 3)
    images.gates["b:1"].set()
    results = {c.get() for c in callers}
    assert images.pulls == ["b:1"]
    assert results == ({None} if outcome == "ok" else {pulls.PullFailure("ErrImagePull", "pull b:1: denied")})


def test_pulls_of_different_images_run_in_parallel_up_to_the_bound() -> None:
    images = FakeImages()
    names = [f"img{i}:1" for i in range(4)]
    images.gate(*names)
    puller = pulls.ImagePuller(images, max_parallel=2)
    callers = [Caller(puller, name) for name in names]
    wait_for(lambda: len(puller.in_progress()) == 4 and len(images.pulls) == 2)
    progress = puller.in_progress()
    assert sorted(p.queued for p in progress.values()) == [False, False, True, True]
    queued = next(p for p in progress.values() if p.queued)
    assert queued.describe() == f"waiting to pull image {queued.image}"
    first = images.pulls[0]
    images.gates[first].set()  # one slot frees: one queued pull starts, never a third at once
    wait_for(lambda: len(images.pulls) == 3)
    for name in names:
        images.gates[name].set()
    assert [c.get() for c in callers] == [None] * 4
    assert images.max_active == 2
    assert puller.in_progress() == {}


@pytest.mark.parametrize(("serialize", "limit", "expected"), [(True, 5, 1), (False, None, 6)])
def test_serialize_pulls_one_at_a_time_and_none_is_unbounded(
    serialize: bool, limit: int | None, expected: int
) -> None:
    images = FakeImages()
    names = [f"img{i}:1" for i in range(6)]
    images.gate(*names)
    puller = pulls.ImagePuller(images, serialize=serialize, max_parallel=limit)
    callers = [Caller(puller, name) for name in names]
    wait_for(lambda: len(images.pulls) == expected and len(puller.in_progress()) == 6)
    time.sleep(0.05)
    assert images.max_active == expected
    for name in names:
        images.gates[name].set()
    assert [c.get() for c in callers] == [None] * 6


def test_max_parallel_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        pulls.ImagePuller(FakeImages(), max_parallel=0)


# --- the deadline ------------------------------------------------------------------------------------


def test_a_hanging_pull_fails_at_its_deadline_and_never_holds_another_image() -> None:
    images = FakeImages(present=("present:1",))
    images.gate("hang:1", "other:1")
    puller = pulls.ImagePuller(images, max_parallel=1, deadline=0.3)
    hanging = Caller(puller, "hang:1")
    images.started["hang:1"].wait(5)
    assert puller.ensure("present:1", "IfNotPresent") is None  # no pull needed: not held at all
    other = Caller(puller, "other:1")  # needs the one slot the hanging pull holds
    assert hanging.get() == pulls.PullFailure(
        "ErrImagePull", "pull hang:1: no progress for 0.3 s (imagePullDeadline)"
    )
    assert "hang:1" not in puller.in_progress()
    images.started["other:1"].wait(5)  # the slot was freed at the deadline, not when the engine gave up
    images.gates["other:1"].set()
    assert other.get() is None
    assert not images.gates["hang:1"].is_set()  # the abandoned pull is still in the "engine"
    images.gates["hang:1"].set()


def test_progress_keeps_a_slow_pull_alive_past_the_deadline() -> None:
    images = FakeImages()
    images.gate("slow:1")
    puller = pulls.ImagePuller(images, deadline=1.0)
    caller = Caller(puller, "slow:1")
    images.started["slow:1"].wait(5)
    for i in range(1, 16):  # 1.5 s in all, progress every 0.1 s
        time.sleep(0.1)
        images.callbacks["slow:1"](i * 1_000_000, 10_000_000)
    assert not caller.returned.is_set()
    images.gates["slow:1"].set()
    assert caller.get() is None


@pytest.mark.usefixtures("fast_poll")
def test_waiting_for_a_slot_counts_against_the_deadline_and_says_so() -> None:
    clock = Clock()
    images = FakeImages()
    images.gate("busy:1", "queued:1")
    puller = pulls.ImagePuller(images, max_parallel=1, deadline=10, clock=clock)
    busy = Caller(puller, "busy:1")
    images.started["busy:1"].wait(5)
    queued = Caller(puller, "queued:1")
    wait_for(lambda: waiters(puller, "queued:1") == 1)
    clock.now += 6
    images.callbacks["busy:1"](1, 2)  # the running pull moves; the queued one cannot
    clock.now += 5
    assert queued.get() == pulls.PullFailure(
        "ErrImagePull", "pull queued:1: waited 10 s for one of 1 pull slots (imagePullDeadline)"
    )
    assert not busy.returned.is_set()
    assert images.pulls == ["busy:1"]
    images.gates["busy:1"].set()
    assert busy.get() is None


def test_a_late_end_of_an_abandoned_pull_does_not_touch_the_next_pull_of_that_image() -> None:
    images = FakeImages()
    images.gate("hang:1")
    puller = pulls.ImagePuller(images, deadline=0.2)
    assert Caller(puller, "hang:1").get() is not None
    first_gate = images.gates["hang:1"]
    images.gates["hang:1"] = threading.Event()  # the next pull hangs too, for now
    second = Caller(puller, "hang:1")
    wait_for(lambda: images.pulls == ["hang:1", "hang:1"])
    images.fail["hang:1"] = errors.ImagePullError("pull hang:1: late failure")
    first_gate.set()  # the abandoned first pull ends, failing
    time.sleep(0.05)
    assert "hang:1" in puller.in_progress()  # the second pull is still on
    del images.fail["hang:1"]
    images.gates["hang:1"].set()
    assert second.get() is None


# --- progress ----------------------------------------------------------------------------------------


def test_in_progress_shows_bytes_so_far_and_logs_at_most_every_five_seconds() -> None:
    clock = Clock()
    images = FakeImages()
    images.gate("big:1")
    puller = pulls.ImagePuller(images, clock=clock)
    caller = Caller(puller, "big:1")
    images.started["big:1"].wait(5)
    started = clock.now
    with capture_logs() as logs:
        for second in range(1, 13):
            clock.now = started + second
            images.callbacks["big:1"](second * 10_000_000, 340_000_000)
    assert [(e["mb_done"], e["mb_total"]) for e in logs if e["event"] == "image_pull_progress"] == [
        (50.0, 340.0),
        (100.0, 340.0),
    ]
    progress = puller.in_progress()["big:1"]
    assert progress == pulls.PullProgress("big:1", started, 120_000_000, 340_000_000)
    assert progress.describe() == "pulling image big:1: 120 MB of 340 MB"
    images.gates["big:1"].set()
    assert caller.get() is None


@pytest.mark.parametrize(
    ("current", "total", "text"),
    [
        (0, 0, "pulling image x:1"),
        (2_500_000, 0, "pulling image x:1: 2.5 MB"),
        (512, 2_048, "pulling image x:1: 512 B of 2.05 kB"),
        (999_999, 1_500_000_000, "pulling image x:1: 1 MB of 1.5 GB"),
    ],
)
def test_describe_uses_decimal_units(current: int, total: int, text: str) -> None:
    assert pulls.PullProgress("x:1", 0.0, current, total).describe() == text


def test_docker_pull_lines_sum_to_bytes_downloaded_of_bytes_known() -> None:
    tally = docker_rt.PullTally()
    lines: list[dict[str, object]] = [
        {"status": "Pulling from library/app", "id": "1"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
        {"status": "Already exists", "progressDetail": {}, "id": "ccc"},
        {"status": "Downloading", "progressDetail": {"current": 100, "total": 1000}, "id": "aaa"},
        {"status": "Downloading", "progressDetail": {"current": 50, "total": 500}, "id": "bbb"},
        {"status": "Downloading", "progressDetail": {"current": 400, "total": 1000}, "id": "aaa"},
    ]
    for line in lines:
        tally.update(line)
    assert (tally.current, tally.total) == (450, 1500)
    tally.update({"status": "Download complete", "progressDetail": {}, "id": "bbb"})
    tally.update({"status": "Extracting", "progressDetail": {"current": 9, "total": 500}, "id": "bbb"})
    assert (tally.current, tally.total) == (900, 1500)


def test_memory_runtime_hangs_a_pull_and_reports_its_size() -> None:
    r = memory.MemoryRuntime(pullable=lambda image: True)
    r.hanging["hang:1"] = threading.Event()
    r.image_sizes["big:1"] = 340_000_000
    seen: list[tuple[int, int]] = []
    r.pull("big:1", lambda current, total: seen.append((current, total)))
    assert seen == [(0, 340_000_000), (340_000_000, 340_000_000)]
    puller = pulls.ImagePuller(r, deadline=0.2)
    assert puller.ensure("hang:1", "IfNotPresent") == pulls.PullFailure(
        "ErrImagePull", "pull hang:1: no progress for 0.2 s (imagePullDeadline)"
    )
    assert not r.image_present("hang:1")
    r.hanging["hang:1"].set()


# --- what ensure_image says it did (the kubelet's Pulled events) ------------------------------------


def test_ensure_image_says_present_or_pulled_or_why_not() -> None:
    images = FakeImages(present=("a:1",))
    images.fail["bad:1"] = errors.ImagePullError("pull bad:1: manifest unknown")
    puller = pulls.ImagePuller(images)
    assert puller.ensure_image("a:1", "IfNotPresent") == pulls.Ensured("a:1", "IfNotPresent", present=True)
    assert puller.ensure_image("a:1", "Never") == pulls.Ensured("a:1", "Never", present=True)
    always = puller.ensure_image("a:1", "Always")
    assert always.pulled and not always.present and always.failure is None
    missing = puller.ensure_image("b:1", "IfNotPresent")
    assert missing.pulled and not missing.present
    bad = puller.ensure_image("bad:1", "IfNotPresent")
    assert not bad.pulled and not bad.present
    assert bad.failure == pulls.PullFailure("ErrImagePull", "pull bad:1: manifest unknown")
    never = puller.ensure_image("c:1", "Never")
    assert never.failure is not None and never.failure.reason == "ErrImageNeverPull" and not never.pulled


def test_ensure_image_times_the_pull_and_the_wait_of_each_caller(fast_poll: None) -> None:
    """A caller queued behind the one pull slot waits longer than its pull; one that joins a pull
    already running counts only the part it waited for."""
    clock = Clock()
    images = FakeImages()
    images.gate("a:1", "b:1")
    puller = pulls.ImagePuller(images, max_parallel=1, clock=clock)
    results: dict[str, pulls.Ensured] = {}

    def ensure(name: str, image: str) -> threading.Thread:
        t = threading.Thread(target=lambda: results.__setitem__(name, puller.ensure_image(image, "Always")))
        t.start()
        return t

    first = ensure("first", "a:1")
    images.started["a:1"].wait(5)
    queued = ensure("queued", "b:1")  # waits for the one slot from t=1000
    wait_for(lambda: waiters(puller, "b:1") == 1)
    clock.now += 2.0
    joined = ensure("joined", "a:1")  # joins the running pull of a:1 at t=1002
    wait_for(lambda: waiters(puller, "a:1") == 2)
    clock.now += 1.5
    images.gates["a:1"].set()  # a:1 done at t=1003.5: b:1 starts
    first.join(5)
    joined.join(5)
    images.started["b:1"].wait(5)
    clock.now += 4.0
    images.gates["b:1"].set()  # b:1 done at t=1007.5, after 4 s of pulling and 7.5 s in all
    queued.join(5)
    assert (results["first"].pull_seconds, results["first"].wait_seconds) == (3.5, 3.5)
    assert (results["joined"].pull_seconds, results["joined"].wait_seconds) == (1.5, 1.5)
    assert (results["queued"].pull_seconds, results["queued"].wait_seconds) == (4.0, 7.5)
    assert all(r.pulled for r in results.values())
