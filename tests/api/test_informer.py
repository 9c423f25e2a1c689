"""The informer against a tiny scripted API server on 127.0.0.1.

The server answers LISTs page by page (limit/continue) and WATCHes as chunked
streams of JSON lines, from a script the test writes; it records every request.
The informer runs in its own thread, as in the operator.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from bgjob.informer import BackgroundJobSink, ChildSink, Informer
from bgjob.kube import Kube
from bgjob.store import Key, Store

NS = "shop"
BGJS = "/apis/bgjob.dev/v1alpha1/backgroundjobs"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"


def bgjob(name: str, version: str, uid: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "bgjob.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": uid or f"uid-{name}",
            "resourceVersion": version,
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"image": "worker:1"},
    }


def deployment(name: str, version: str, owner: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-deploy-{name}",
            "resourceVersion": version,
            "ownerReferences": [
                {"kind": "BackgroundJob", "name": owner, "uid": f"uid-{owner}", "controller": True}
            ],
        },
        "spec": {"replicas": 1},
    }


Watch = list[dict[str, Any]] | int  # events to stream then end, or an HTTP status


class Script:
    """What the fake server answers; every request is recorded."""

    def __init__(self) -> None:
        self.lists: list[tuple[str, list[dict[str, Any]]]] = []  # (version, items) per LIST
        self.watches: list[Watch] = []  # one per WATCH request, in order
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.page_410_once = False
        self.lock = threading.Lock()

    def list_page(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        limit = int(query.get("limit", ["500"])[0])
        token = query.get("continue", [None])[0]
        with self.lock:
            if token is None:
                version, items = self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]
                self.current = (version, items)
                start = 0
            else:
                if self.page_410_once:
                    self.page_410_once = False
                    return 410, {
                        "kind": "Status",
                        "code": 410,
                        "reason": "Expired",
                        "message": "continue token expired",
                    }
                start = int(token)
            version, items = self.current
        page = items[start : start + limit]
        meta: dict[str, Any] = {"resourceVersion": version}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        return 200, {"kind": "List", "metadata": meta, "items": page}

    def next_watch(self) -> Watch:
        with self.lock:
            return self.watches.pop(0) if self.watches else []


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def server(script: Script) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            script.requests.append((url.path, query))
            if "watch" not in query:
                self._json(*script.list_page(query))
                return
            plan = script.next_watch()
            if isinstance(plan, int):
                self._json(plan, {"kind": "Status", "code": plan, "message": "gone"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for event in plan:
                if event.get("sleep"):
                    time.sleep(event["sleep"])
                    continue
                line = json.dumps(event).encode() + b"\n"
                # Split each line over two chunks: the client must reassemble lines.
                for part in (line[:7], line[7:]):
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def kube(server: str) -> Iterator[Kube]:
    api = client.ApiClient(client.Configuration(host=server))
    yield Kube(api)
    api.close()


class Queue:
    def __init__(self) -> None:
        self.keys: list[Key] = []

    def __call__(self, keys: Any) -> None:
        self.keys.extend(keys)


def eventually(check: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    assert check()


@pytest.fixture
def running() -> Iterator[Callable[[Informer], Informer]]:
    started: list[Informer] = []

    def start(informer: Informer) -> Informer:
        informer.backoff_cap = 0.2
        informer.start()
        started.append(informer)
        return informer

    yield start
    for informer in started:
        informer.stop()
        informer.join(5)


def watches(script: Script) -> list[dict[str, list[str]]]:
    return [q for _, q in script.requests if "watch" in q]


def lists(script: Script) -> list[dict[str, list[str]]]:
    return [q for _, q in script.requests if "watch" not in q]


def test_a_list_is_paginated_and_the_watch_starts_from_its_version(
    script: Script, kube: Kube, running: Callable[[Informer], Informer]
) -> None:
    script.lists = [("100", [bgjob(f"b{i}", "90") for i in range(5)])]
    script.watches = [[{"type": "ADDED", "object": bgjob("b5", "101")}, {"sleep": 5}]]
    store, queue = Store(), Queue()
    informer = Informer(kube, "BackgroundJob", None, BackgroundJobSink(store, queue, None))
    informer.page_size = 2
    running(informer)

    eventually(lambda: store.sizes()[0] == 6)
    pages = lists(script)
    assert [q.get("continue") for q in pages] == [None, ["2"], ["4"]]
    assert all(q["limit"] == ["2"] for q in pages)
    (watch,) = watches(script)
    assert watch["resourceVersion"] == ["100"]
    assert watch["allowWatchBookmarks"] == ["true"]
    assert 240 <= int(watch["timeoutSeconds"][0]) <= 300
    assert informer.synced.is_set() and informer.live
    assert sorted(queue.keys) == sorted([(NS, f"b{i}") for i in range(6)])
    assert "managedFields" not in store.bgjob((NS, "b0"))["metadata"]  # type: ignore[index]


def test_bookmarks_move_the_version_a_resumed_watch_starts_from(
    script: Script, kube: Kube, running: Callable[[Informer], Informer]
) -> None:
    script.lists = [("100", [bgjob("a", "90")])]
    bookmark = {
        "type": "BOOKMARK",
        "object": {"kind": "BackgroundJob", "metadata": {"resourceVersion": "250"}},
    }
    script.watches = [[bookmark], [{"sleep": 5}]]  # the first ends on time, with no error
    store, queue = Store(), Queue()
    running(Informer(kube, "BackgroundJob", None, BackgroundJobSink(store, queue, None)))

    eventually(lambda: len(watches(script)) == 2)
    assert watches(script)[1]["resourceVersion"] == ["250"]
    assert len(lists(script)) == 1, "a watch that ends on time is resumed, not relisted"
    assert queue.keys == [(NS, "a")], "a bookmark queues nothing"


@pytest.mark.parametrize("expiry", ["error-event", "http-410"])
def test_410_gone_relists_and_the_cache_becomes_exactly_the_list(
    expiry: str, script: Script, kube: Kube, running: Callable[[Informer], Informer]
) -> None:
    before = [bgjob("kept", "10"), bgjob("ghost", "11"), bgjob("edited", "12")]
    after = [bgjob("kept", "10"), bgjob("edited", "30"), bgjob("born", "31")]
    script.lists = [("20", before), ("40", after)]
    gone: Watch = (
        [
            {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "code": 410,
                    "reason": "Expired",
                    "message": "too old resource version",
                },
            }
        ]
        if expiry == "error-event"
        else 410
    )
    script.watches = [gone, [{"sleep": 5}]]
    store, queue = Store(), Queue()
    informer = running(Informer(kube, "BackgroundJob", None, BackgroundJobSink(store, queue, None)))

    eventually(lambda: informer.lists == 2)
    eventually(lambda: informer.live)
    assert sorted(k[1] for k in store.bgjob_keys()) == ["born", "edited", "kept"]
    # First list: all three; relist: what appeared, changed or vanished, not "kept".
    assert sorted(k[1] for k in queue.keys[3:]) == ["born", "edited", "ghost"]
    assert watches(script)[-1]["resourceVersion"] == ["40"]


def test_an_expired_continue_token_starts_the_list_over(
    script: Script, kube: Kube, running: Callable[[Informer], Informer]
) -> None:
    script.lists = [("100", [bgjob(f"b{i}", "90") for i in range(3)])]
    script.page_410_once = True
    script.watches = [[{"sleep": 5}]]
    store = Store()
    informer = Informer(kube, "BackgroundJob", None, BackgroundJobSink(store, Queue(), None))
    informer.page_size = 2
    running(informer)

    eventually(lambda: informer.synced.is_set())
    assert store.sizes()[0] == 3
    assert [q.get("continue") for q in lists(script)] == [None, ["2"], None, ["2"]]


def test_a_broken_watch_relists_with_backoff_and_heals_a_deleted_child(
    script: Script, kube: Kube, running: Callable[[Informer], Informer]
) -> None:
    store, queue = Store(), Queue()
    store.put_bgjob(bgjob("solo", "5"))
    script.lists = [
        ("20", [deployment("solo", "15", "solo")]),
        ("21", [deployment("solo", "15", "solo")]),
        ("30", []),  # deleted by hand while the watch was down
    ]
    script.watches = [500, 500, [{"sleep": 5}]]
    sink = ChildSink(store, queue, "Deployment", NS)
    informer = running(Informer(kube, "Deployment", NS, sink, label_selector="a=b"))

    eventually(lambda: informer.lists == 3)
    assert store.children((NS, "solo")) == {}
    assert queue.keys == [(NS, "solo"), (NS, "solo")]  # appeared, then vanished
    assert all(path == DEPLOYMENTS for path, _ in script.requests)
    assert all(q["labelSelector"] == ["a=b"] for _, q in script.requests)


def test_watch_events_reach_the_store_and_queue_the_owner(
    script: Script, kube: Kube, running: Callable[[Informer], Informer]
) -> None:
    store, queue = Store(), Queue()
    store.put_bgjob(bgjob("solo", "5"))
    script.lists = [("20", [])]
    script.watches = [
        [
            {"type": "ADDED", "object": deployment("solo", "21", "solo")},
            {"type": "ADDED", "object": deployment("stray", "22", "nobody")},
            {"type": "MODIFIED", "object": deployment("solo", "23", "solo")},
            {"type": "DELETED", "object": deployment("solo", "24", "solo")},
            {"sleep": 5},
        ]
    ]
    informer = running(Informer(kube, "Deployment", NS, ChildSink(store, queue, "Deployment", NS)))

    eventually(lambda: len(queue.keys) == 3)
    time.sleep(0.1)
    assert queue.keys == [(NS, "solo")] * 3, "the stray's event queues nobody"
    assert store.children((NS, "solo")) == {}
    assert informer.live


def test_stop_ends_an_open_watch_at_once(
    script: Script, kube: Kube, running: Callable[[Informer], Informer]
) -> None:
    script.lists = [("1", [])]
    script.watches = [[{"sleep": 30}]]
    informer = running(
        Informer(kube, "BackgroundJob", None, BackgroundJobSink(Store(), Queue(), None))
    )
    eventually(lambda: informer.live)
    started = time.monotonic()
    informer.stop()
    informer.join(5)
    assert time.monotonic() - started < 2
    assert informer._thread is not None and not informer._thread.is_alive()


def test_a_relist_trims_each_page_before_asking_for_the_next(
    script: Script, kube: Kube, running: Callable[[Informer], Informer]
) -> None:
    store, queue = Store(), Queue()
    store.put_bgjob(bgjob("solo", "5"))
    padded = []
    for i in range(5):
        body = deployment(f"d{i}", "15", "solo")
        body["spec"]["template"] = {"spec": {"containers": [{"env": [{"value": "x" * 100_000}]}]}}
        body["status"] = {"tenant": "y" * 100_000, "replicas": 1}
        padded.append(body)
    script.lists = [("20", padded)]
    script.watches = [[{"sleep": 5}]]

    class Spy(ChildSink):
        trimmed_at: list[int] = []  # LIST requests made when each item was trimmed
        replaced: list[dict[str, Any]] = []

        def trim(self, body: dict[str, Any]) -> dict[str, Any]:
            self.trimmed_at.append(len(lists(script)))
            return super().trim(body)

        def replace(self, bodies: list[dict[str, Any]]) -> None:
            self.replaced.extend(bodies)
            super().replace(bodies)

    sink = Spy(store, queue, "Deployment", NS)
    informer = Informer(kube, "Deployment", NS, sink)
    informer.page_size = 2
    running(informer)

    eventually(lambda: informer.lists == 1)
    assert sink.trimmed_at == [1, 1, 2, 2, 3]  # page by page, not at the end of the list
    assert len(sink.replaced) == 5
    assert all(len(json.dumps(body)) < 2_000 for body in sink.replaced)
    assert len(store.children((NS, "solo"))) == 5
