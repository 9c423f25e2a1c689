"""The work queue: coalescing, one reconcile per key at a time, delays and backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bgjob.workqueue import WorkQueue

Key = tuple[str, str]
KEY: Key = ("shop", "thumbnailer")
OTHER: Key = ("shop", "mailer")


@contextlib.asynccontextmanager
async def running(
    queue: WorkQueue[Key], handle: Callable[[Key], Awaitable[None]], workers: int = 4
) -> AsyncIterator[None]:
    """Run the delay pump and ``workers`` workers for the duration of the block."""
    tasks = [asyncio.create_task(queue.run_delayed())]
    tasks += [asyncio.create_task(queue.run_worker(handle)) for _ in range(workers)]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


def test_many_adds_of_a_waiting_key_coalesce_into_one_reconcile() -> None:
    async def scenario() -> list[Key]:
        queue: WorkQueue[Key] = WorkQueue()
        seen: list[Key] = []

        async def handle(key: Key) -> None:
            seen.append(key)

        for _ in range(5):
            queue.add(KEY)
        queue.add(OTHER)
        assert len(queue) == 2
        async with running(queue, handle):
            await settle()
        return seen

    assert sorted(asyncio.run(scenario())) == sorted([KEY, OTHER])


def test_a_key_is_never_reconciled_by_two_workers_at_once() -> None:
    async def scenario() -> tuple[int, int]:
        queue: WorkQueue[Key] = WorkQueue()
        busy = 0
        most = 0
        calls = 0

        async def handle(key: Key) -> None:
            nonlocal busy, most, calls
            calls += 1
            busy += 1
            most = max(most, busy)
            if calls == 1:
                for _ in range(3):  # events arrive while the first reconcile runs
                    queue.add(KEY)
                    await asyncio.sleep(0.01)
            busy -= 1

        queue.add(KEY)
        async with running(queue, handle, workers=4):
            await settle(0.2)
        return most, calls

    most, calls = asyncio.run(scenario())
    assert most == 1
    # The adds during the run collapse into exactly one more reconcile afterwards.
    assert calls == 2


def test_different_keys_are_reconciled_in_parallel() -> None:
    async def scenario() -> int:
        queue: WorkQueue[Key] = WorkQueue()
        busy = 0
        most = 0

        async def handle(key: Key) -> None:
            nonlocal busy, most
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.05)
            busy -= 1

        queue.add(KEY)
        queue.add(OTHER)
        async with running(queue, handle, workers=2):
            await settle(0.15)
        return most

    assert asyncio.run(scenario()) == 2


def test_a_key_added_during_its_reconcile_runs_again_even_if_the_reconcile_fails() -> None:
    async def scenario() -> int:
        queue: WorkQueue[Key] = WorkQueue()
        calls = 0

        async def handle(key: Key) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                queue.add(KEY)
                raise RuntimeError("boom")

        queue.add(KEY)
        tasks = [asyncio.create_task(queue.run_worker(handle)) for _ in range(2)]
        await settle()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return calls

    # The worker that failed is gone (the caller catches errors), but the re-add survives.
    assert asyncio.run(scenario()) == 2


def test_add_after_fires_later_and_not_before() -> None:
    async def scenario() -> tuple[list[Key], list[Key]]:
        queue: WorkQueue[Key] = WorkQueue()
        seen: list[Key] = []

        async def handle(key: Key) -> None:
            seen.append(key)

        async with running(queue, handle):
            queue.add_after(KEY, 0.3)
            await asyncio.sleep(0.1)
            early = list(seen)
            await asyncio.sleep(0.5)
            return early, seen

    early, late = asyncio.run(scenario())
    assert early == []
    assert late == [KEY]


def test_an_earlier_wake_up_is_not_held_back_by_a_later_one() -> None:
    async def scenario() -> list[Key]:
        queue: WorkQueue[Key] = WorkQueue()
        seen: list[Key] = []

        async def handle(key: Key) -> None:
            seen.append(key)

        async with running(queue, handle):
            queue.add_after(OTHER, 60)
            await settle(0.02)
            queue.add_after(KEY, 0.05)
            await asyncio.sleep(0.3)
        return seen

    assert asyncio.run(scenario()) == [KEY]


def test_add_after_with_no_delay_is_an_add() -> None:
    queue: WorkQueue[Key] = WorkQueue()
    queue.add_after(KEY, 0)
    assert len(queue) == 1


def test_retries_back_off_exponentially_up_to_the_maximum() -> None:
    queue: WorkQueue[Key] = WorkQueue(base_delay=0.5, max_delay=5.0)
    delays = [queue.retry(KEY) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_is_per_key_and_reset_by_a_success() -> None:
    queue: WorkQueue[Key] = WorkQueue(base_delay=1.0, max_delay=300.0)
    queue.retry(KEY)
    queue.retry(KEY)
    assert queue.retry(OTHER) == 1.0
    queue.forget(KEY)
    assert queue.retry(KEY) == 1.0


@pytest.mark.parametrize("failures", [40, 2000])
def test_backoff_never_exceeds_the_maximum_however_often_it_fails(failures: int) -> None:
    queue: WorkQueue[Key] = WorkQueue(base_delay=0.5, max_delay=300.0)
    for _ in range(failures - 1):
        queue.retry(KEY)
    assert queue.retry(KEY) == 300.0


def test_only_the_earliest_wake_up_of_a_key_is_kept() -> None:
    import asyncio

    from bgjob.workqueue import WorkQueue

    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        seen: list[str] = []

        async def handle(key: str) -> None:
            seen.append(key)

        for delay in (0.2, 0.05, 0.3, 0.1):
            queue.add_after("a", delay)
        tasks = [
            asyncio.create_task(queue.run_delayed()),
            asyncio.create_task(queue.run_worker(handle)),
        ]
        await asyncio.sleep(0.5)
        for task in tasks:
            task.cancel()
        return seen

    assert asyncio.run(scenario()) == ["a"]


def test_a_busy_namespace_does_not_starve_another() -> None:
    async def scenario() -> list[Key]:
        queue: WorkQueue[Key] = WorkQueue()
        seen: list[Key] = []

        async def handle(key: Key) -> None:
            seen.append(key)

        for i in range(1000):
            queue.add(("noisy", f"job-{i}"))
        queue.add(("quiet", "mailer"))
        queue.add(("calm", "reports"))
        async with running(queue, handle, workers=1):
            for _ in range(100):
                await asyncio.sleep(0)
                if len(seen) >= 4:
                    break
        return seen

    seen = asyncio.run(scenario())
    # Round robin over namespaces: the quiet ones go second and third, not 1001st.
    assert seen[:3] == [("noisy", "job-0"), ("quiet", "mailer"), ("calm", "reports")]
    assert seen[3] == ("noisy", "job-1")


def test_keys_of_one_namespace_keep_their_order() -> None:
    async def scenario() -> list[Key]:
        queue: WorkQueue[Key] = WorkQueue()
        seen: list[Key] = []

        async def handle(key: Key) -> None:
            seen.append(key)

        for name in ("a", "b", "c"):
            queue.add(("shop", name))
        async with running(queue, handle, workers=1):
            await settle()
        return seen

    assert asyncio.run(scenario()) == [("shop", "a"), ("shop", "b"), ("shop", "c")]


@pytest.mark.parametrize(
    ("asked", "expected"), [(None, 0.5), (0.1, 0.5), (7.0, 7.0), (900.0, 900.0)]
)
def test_a_retry_waits_at_least_what_the_server_asked(asked: float | None, expected: float) -> None:
    queue: WorkQueue[Key] = WorkQueue(base_delay=0.5, max_delay=300.0)
    assert queue.retry(KEY, at_least=asked) == expected
    assert queue.failures(KEY) == 1


# --- metrics, as a scraper reads them on /metrics ----------------------------------------

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape() -> Series:
    """The operator's /metrics page (the process registry), parsed as Prometheus parses it."""
    page = generate_latest(REGISTRY).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }


def of(page: Series, metric: str, name: str, **labels: str) -> float:
    """One series of the queue called ``name``; a missing series fails the test."""
    return page[(metric, tuple(sorted({"name": name, **labels}.items())))]


@pytest.fixture
def qname(request: pytest.FixtureRequest) -> str:
    """A queue name of its own per test: the registry is the process's, shared."""
    return f"test-{request.node.name}"


def test_adds_and_depth_count_as_client_go_counts(qname: str) -> None:
    async def scenario() -> tuple[Series, Series, Series]:
        queue: WorkQueue[Key] = WorkQueue(name=qname)
        gate = asyncio.Event()
        calls = 0

        async def handle(key: Key) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                await gate.wait()

        for _ in range(5):
            queue.add(KEY)  # one add: the other four find it pending
        queue.add(OTHER)
        waiting = scrape()
        async with running(queue, handle, workers=1):
            await settle()
            for _ in range(3):
                queue.add(KEY)  # while KEY runs: one add, pending until its run ends
            running_again = scrape()
            gate.set()
            await settle()
        return waiting, running_again, scrape()

    waiting, during, after = asyncio.run(scenario())
    assert of(waiting, "workqueue_adds_total", qname) == 2
    assert of(waiting, "workqueue_depth", qname) == 2
    # KEY is running and added again (counted once), OTHER still waits for the one worker.
    assert of(during, "workqueue_adds_total", qname) == 3
    assert of(during, "workqueue_depth", qname) == 2
    # Its second run is not a new add; everything was taken.
    assert of(after, "workqueue_adds_total", qname) == 3
    assert of(after, "workqueue_depth", qname) == 0
    assert of(after, "workqueue_queue_duration_seconds_count", qname) == 3
    assert of(after, "workqueue_work_duration_seconds_count", qname) == 3


def test_queue_duration_is_the_wait_and_work_duration_the_handling(qname: str) -> None:
    async def scenario() -> Series:
        queue: WorkQueue[Key] = WorkQueue(name=qname)

        async def handle(key: Key) -> None:
            await asyncio.sleep(0.02)

        queue.add(KEY)
        await asyncio.sleep(0.3)  # no worker yet: it waits
        async with running(queue, handle, workers=1):
            await settle(0.2)
        return scrape()

    page = asyncio.run(scenario())
    waited = of(page, "workqueue_queue_duration_seconds_sum", qname)
    worked = of(page, "workqueue_work_duration_seconds_sum", qname)
    assert 0.3 <= waited < 1.0
    assert 0.02 <= worked < 0.3
    # In controller-runtime's buckets: the wait is above 0.1 s, within 1 s.
    assert of(page, "workqueue_queue_duration_seconds_bucket", qname, le="0.1") == 0
    assert of(page, "workqueue_queue_duration_seconds_bucket", qname, le="1.0") == 1
    assert of(page, "workqueue_work_duration_seconds_bucket", qname, le="0.01") == 0
    assert of(page, "workqueue_work_duration_seconds_bucket", qname, le="1.0") == 1


def test_the_buckets_are_controller_runtimes(qname: str) -> None:
    WorkQueue[Key](name=qname).add(KEY)  # the series exist once the queue does
    bounds = sorted(
        float(dict(labels)["le"])
        for (metric, labels) in scrape()
        if metric == "workqueue_queue_duration_seconds_bucket" and ("name", qname) in labels
    )
    # prometheus.ExponentialBuckets(10e-9, 10, 12), then +Inf.
    assert bounds == [10e-9 * 10**i for i in range(12)] + [float("inf")]


def test_a_retry_counts_and_its_add_counts_when_it_falls_due(qname: str) -> None:
    async def scenario() -> tuple[Series, Series]:
        queue: WorkQueue[Key] = WorkQueue(base_delay=0.1, name=qname)
        seen: list[Key] = []

        async def handle(key: Key) -> None:
            seen.append(key)

        async with running(queue, handle, workers=1):
            queue.retry(KEY)
            queue.retry(OTHER)
            backing_off = scrape()
            await settle(0.4)
        assert sorted(seen) == sorted([KEY, OTHER])
        return backing_off, scrape()

    backing_off, after = asyncio.run(scenario())
    assert of(backing_off, "workqueue_retries_total", qname) == 2
    assert of(backing_off, "workqueue_adds_total", qname) == 0
    assert of(backing_off, "workqueue_depth", qname) == 0  # not ready yet: not in the queue
    assert of(after, "workqueue_adds_total", qname) == 2
    assert of(after, "workqueue_retries_total", qname) == 2


def test_work_in_progress_is_measured_at_scrape_time(qname: str) -> None:
    async def scenario() -> tuple[Series, Series, Series]:
        queue: WorkQueue[Key] = WorkQueue(name=qname)
        gate = asyncio.Event()

        async def handle(key: Key) -> None:
            await gate.wait()  # a stuck reconcile

        idle = scrape()
        queue.add(KEY)
        async with running(queue, handle, workers=2):
            await settle(0.1)
            queue.add(OTHER)
            await settle(0.3)
            stuck = scrape()
            gate.set()
            await settle()
            return idle, stuck, scrape()

    idle, stuck, after = asyncio.run(scenario())
    assert of(idle, "workqueue_unfinished_work_seconds", qname) == 0
    assert of(idle, "workqueue_longest_running_processor_seconds", qname) == 0
    longest = of(stuck, "workqueue_longest_running_processor_seconds", qname)
    unfinished = of(stuck, "workqueue_unfinished_work_seconds", qname)
    assert 0.4 <= longest < 1.5  # KEY, since it was taken
    assert longest + 0.3 <= unfinished < 2 * longest  # KEY's time plus OTHER's
    assert of(after, "workqueue_unfinished_work_seconds", qname) == 0
    assert of(after, "workqueue_longest_running_processor_seconds", qname) == 0
    assert of(after, "workqueue_work_duration_seconds_count", qname) == 2


def test_the_operators_queue_is_named_backgroundjob() -> None:
    queue: WorkQueue[Key] = WorkQueue()
    before = scrape().get(("workqueue_adds_total", (("name", "backgroundjob"),)), 0.0)
    queue.add(("shop", "metrics-name-check"))
    assert of(scrape(), "workqueue_adds_total", "backgroundjob") == before + 1


def test_unfinished_counts_waiting_and_running_keys_not_delayed_ones() -> None:
    async def scenario() -> list[int]:
        queue: WorkQueue[Key] = WorkQueue()
        release = asyncio.Event()
        counts: list[int] = []

        async def handle(key: Key) -> None:
            await release.wait()

        queue.add(KEY)
        queue.add(OTHER)
        queue.add_after(("shop", "later"), 60)
        counts.append(queue.unfinished)
        async with running(queue, handle, workers=1):
            await settle()
            counts.append(queue.unfinished)  # one running, one waiting
            release.set()
            await settle()
            counts.append(queue.unfinished)
        return counts

    assert asyncio.run(scenario()) == [2, 2, 0]
