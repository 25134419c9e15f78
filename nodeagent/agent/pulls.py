"""One image puller shared by every pod: imagePullPolicy as the kubelet applies it, one pull per image at a
time, pulls of different images in parallel up to a bound, and a deadline so a registry that never answers
fails one pod's pull instead of holding everything.

The kubelet (pkg/kubelet/images/puller.go) has a serial puller (`serializeImagePulls: true`, its default)
and a parallel one bounded by `maxParallelImagePulls`. Here the default is parallel, bounded by 5: a node
agent with serial pulls lets one hanging pull block every other pod's image.

The deadline is a no-progress deadline, as containerd's `image_pull_progress_timeout` and dockershim's
`--image-pull-progress-deadline` are: a pull fails when nothing arrived for `deadline` seconds (or when it
waited that long for a pull slot), so a large image on a slow but moving link is never cut off. The
caller returns at once then; the engine may go on with the abandoned pull (the Docker runtime's own read
timeout ends it), and the next `ensure` starts a fresh one.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from nodeagent import errors

log = structlog.get_logger(__name__)

ERR_IMAGE_PULL = "ErrImagePull"
ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
LOG_EVERY = 5.0  # seconds between two image_pull_progress lines of one image
POLL = 1.0  # real seconds a waiting caller sleeps at most before it re-reads the clock


@dataclass(frozen=True)
class PullProgress:
    """One image being pulled (or queued for a pull slot), as `status` shows it."""

    image: str
    started: float  # clock() when the pull began (when it was queued, for a queued one)
    current: int  # bytes downloaded so far, summed over layers
    total: int  # bytes known so far (0 when unknown)
    queued: bool = False  # waiting for one of the maxParallelImagePulls slots

    def describe(self) -> str:
        """`pulling image X: 120 MB of 340 MB`, as a waiting container's message."""
        if self.queued:
            return f"waiting to pull image {self.image}"
        text = f"pulling image {self.image}"
        if self.total > 0:
            return f"{text}: {human_size(self.current)} of {human_size(self.total)}"
        if self.current > 0:
            return f"{text}: {human_size(self.current)}"
        return text


@dataclass(frozen=True)
class PullFailure:
    """Why a container cannot be created for its image, as Kubernetes' waiting reason says it."""

    reason: str  # ErrImagePull / ErrImageNeverPull
    message: str


@dataclass(frozen=True)
class Ensured:
    """What `ensure_image` found or did, for the kubelet's image events (Pulling, Pulled, Failed): the image
    was already present, or a pull ran (`pulled`), with how long the pull took and how long this caller
    waited in all (a queued slot, another pod's pull of the same image)."""

    image: str
    policy: str
    present: bool = False  # there before the call, and the policy did not ask for a pull
    pulled: bool = False  # a pull ran for this call and succeeded
    pull_seconds: float = 0.0
    wait_seconds: float = 0.0  # pull_seconds plus the time spent waiting for a slot or another caller
    failure: PullFailure | None = None


def human_size(n: int) -> str:
    """Bytes in decimal units with three significant digits, as Docker and kubectl print sizes."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 999.5 or unit == "TB":
            return f"{value:.3g} {unit}" if unit != "B" else f"{n} B"
        value /= 1000
    raise AssertionError("unreachable")


class Images(Protocol):
    """The part of runtime.ContainerRuntime a puller uses."""

    def image_present(self, image: str) -> bool: ...

    def pull(self, image: str, on_progress: Callable[[int, int], None] | None = None) -> None: ...


class _Pull:
    """One pull of one image, shared by every caller that asks for it while it runs. Guarded by the
    puller's lock."""

    def __init__(self, image: str, now: float) -> None:
        self.image = image
        self.queued_at = now
        self.started = now
        self.current = 0
        self.total = 0
        self.last_progress = now  # the deadline counts from here
        self.last_log = now
        self.running = False  # holds a slot and has a thread
        self.waiters = 0  # callers waiting for its result
        self.done = False
        self.finished = now  # clock() when it ended
        self.failure: PullFailure | None = None
        self.error: errors.NodeAgentError | None = None  # re-raised in every caller (engine gone, ...)


class ImagePuller:
    """`ensure(image, policy)` for every container create; thread-safe, blocks only its caller."""

    def __init__(
        self,
        runtime: Images,
        *,
        serialize: bool = False,
        max_parallel: int | None = 5,
        deadline: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_parallel is not None and max_parallel < 1:
            raise ValueError("max_parallel must be at least 1 or None")
        self._rt = runtime
        self._limit = 1 if serialize else max_parallel
        self._deadline = deadline
        self._clock = clock
        self._cond = threading.Condition()
        self._pulls: dict[str, _Pull] = {}  # the current pull of each image, running or queued
        self._queue: collections.deque[_Pull] = collections.deque()
        self._running = 0

    def ensure(self, image: str, policy: str) -> PullFailure | None:
        """`ensure_image`'s failure: None means the image is there now."""
        return self.ensure_image(image, policy).failure

    def ensure_image(self, image: str, policy: str) -> Ensured:
        """imagePullPolicy as the kubelet applies it: Never uses the image only if present; Always pulls;
        IfNotPresent (and anything else) pulls when it is missing. Says whether it was present or pulled
        (and how long that took), or why it failed.

        Errors other than a failed pull (the engine does not answer) are raised, as the runtime raised them.
        """
        if policy == "Never":
            if self._rt.image_present(image):
                return Ensured(image, policy, present=True)
            message = f'Container image "{image}" is not present with pull policy of Never'
            return Ensured(image, policy, failure=PullFailure(ERR_IMAGE_NEVER_PULL, message))
        if policy != "Always" and self._rt.image_present(image):
            return Ensured(image, policy, present=True)
        called = self._clock()
        with self._cond:
            pull = self._pulls.get(image)
            if pull is None:
                pull = self._pulls[image] = _Pull(image, self._clock())
                self._queue.append(pull)
                self._start_queued()
            pull.waiters += 1
            try:
                while not pull.done:
                    left = pull.last_progress + self._deadline - self._clock()
                    if left <= 0:
                        self._expire(pull)
                        break
                    self._cond.wait(min(left, POLL))
            finally:
                pull.waiters -= 1
            if pull.error is not None:
                raise pull.error
            if pull.failure is not None:
                return Ensured(image, policy, failure=pull.failure)
            return Ensured(
                image,
                policy,
                pulled=True,
                pull_seconds=max(pull.finished - max(pull.started, called), 0.0),  # joined: its share
                wait_seconds=max(pull.finished - called, 0.0),
            )

    def in_progress(self) -> dict[str, PullProgress]:
        """Every pull now running or waiting for a slot, by image."""
        with self._cond:
            return {
                image: PullProgress(
                    image=image,
                    started=p.started,
                    current=p.current,
                    total=p.total,
                    queued=not p.running,
                )
                for image, p in self._pulls.items()
            }

    # --- under self._cond -------------------------------------------------------------------------

    def _start_queued(self) -> None:
        while self._queue and (self._limit is None or self._running < self._limit):
            pull = self._queue.popleft()
            if pull.done:
                continue
            pull.running = True
            pull.started = pull.last_progress = pull.last_log = self._clock()
            self._running += 1
            threading.Thread(target=self._run, args=(pull,), name=f"pull {pull.image}", daemon=True).start()

    def _finish(self, pull: _Pull, failure: PullFailure | None, error: errors.NodeAgentError | None) -> None:
        """The pull's one result (the first of: the runtime's answer, the deadline); frees its slot."""
        if pull.done:
            return
        pull.done = True
        pull.finished = self._clock()
        pull.failure, pull.error = failure, error
        if self._pulls.get(pull.image) is pull:
            del self._pulls[pull.image]
        if pull.running:
            self._running -= 1
            self._start_queued()
        self._cond.notify_all()

    def _expire(self, pull: _Pull) -> None:
        if pull.running:
            message = f"pull {pull.image}: no progress for {self._deadline:g} s (imagePullDeadline)"
        else:
            message = (
                f"pull {pull.image}: waited {self._deadline:g} s for one of {self._limit} pull slots "
                "(imagePullDeadline)"
            )
        log.warning("image_pull_deadline", image=pull.image, message=message)
        self._finish(pull, PullFailure(ERR_IMAGE_PULL, message), None)

    # --- the pull thread --------------------------------------------------------------------------

    def _run(self, pull: _Pull) -> None:
        failure: PullFailure | None = None
        error: errors.NodeAgentError | None = None
        try:
            self._rt.pull(pull.image, lambda current, total: self._progress(pull, current, total))
        except errors.ImagePullError as exc:
            failure = PullFailure(ERR_IMAGE_PULL, str(exc))
        except errors.NodeAgentError as exc:
            error = exc
        except Exception as exc:  # a bug must not leave callers waiting for their deadline
            log.exception("image_pull_crashed", image=pull.image)
            failure = PullFailure(ERR_IMAGE_PULL, f"pull {pull.image}: {type(exc).__name__}: {exc}")
        ok = failure is None and error is None
        with self._cond:
            if pull.done:
                log.info("image_pull_abandoned_ended", image=pull.image, ok=ok)
            elif ok:
                log.info("image_pulled", image=pull.image, seconds=round(self._clock() - pull.started, 1))
            self._finish(pull, failure, error)

    def _progress(self, pull: _Pull, current: int, total: int) -> None:
        """The runtime saw the engine move: bytes so far, and the total known so far."""
        with self._cond:
            if pull.done:
                return
            now = self._clock()
            pull.current, pull.total = current, total
            pull.last_progress = now
            if now - pull.last_log >= LOG_EVERY:
                pull.last_log = now
                log.info(
                    "image_pull_progress",
                    image=pull.image,
                    mb_done=round(current / 1e6, 1),
                    mb_total=round(total / 1e6, 1),
                )
