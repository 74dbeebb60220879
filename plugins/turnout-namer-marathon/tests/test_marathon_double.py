"""The Marathon API double, checked with the real ``marathon`` client (synchronous, requests):
if that client, written against real Marathon, reads the double's answers, the shapes match.

The client is only used here, by the tests, in threads: it blocks, and its event stream never
times out (``event_stream`` passes no timeout to requests), so every read of it is bounded by
a thread join and by the double closing its streams."""

from __future__ import annotations

import threading
import time

import marathon
import pytest
import requests
from marathon.exceptions import InternalServerError, MarathonHttpError, NotFoundError
from marathon.models.events import (
    MarathonEventStreamAttached,
    MarathonHealthStatusChangedEvent,
    MarathonStatusUpdateEvent,
)


def client(double, **kw) -> marathon.MarathonClient:
    return marathon.MarathonClient(double.url, timeout=5, **kw)


def test_apps_and_tasks_through_the_marathon_client(marathon_double):
    double = marathon_double()
    double.add_app("/prod/web", health_checks=1, labels={"team": "a"})
    web = double.add_task("/prod/web", "127.0.0.1", [8080, 8081])
    double.add_app("/prod/ipt", ip_per_task_port=9000)
    double.add_task("/prod/ipt", "10.0.0.7", [], ip_address="9.9.9.9")
    double.add_app("/db", labels={"team": "b"}, cmd="postgres")
    c = client(double)

    apps = c.list_apps(embed_tasks=True)
    assert [a.id for a in apps] == ["/db", "/prod/ipt", "/prod/web"]
    assert [len(a.tasks) for a in apps] == [0, 1, 1]
    assert [a.id for a in c.list_apps(label="team==a")] == ["/prod/web"]
    assert [a.id for a in c.list_apps(label="team!=a")] == ["/db", "/prod/ipt"]
    assert [a.id for a in c.list_apps(app_id="ipt")] == ["/prod/ipt"]
    assert [a.id for a in c.list_apps(cmd="postgres")] == ["/db"]
    assert c.list_apps()[2].tasks == []  # tasks only when embedded

    app = c.get_app("/prod/web", embed_tasks=True)
    assert app.id == "/prod/web" and len(app.health_checks) == 1
    (task,) = app.tasks
    assert (task.id, task.app_id, task.host, task.ports) == (
        web,
        "/prod/web",
        "127.0.0.1",
        [8080, 8081],
    )
    assert task.state == "TASK_RUNNING"
    assert [r.alive for r in task.health_check_results] == [True]
    assert app.tasks_running == 1 and app.tasks_healthy == 1
    ipt = c.get_app("prod/ipt", embed_tasks=True)
    assert ipt.tasks[0].ip_addresses[0].ip_address == "9.9.9.9"
    assert c.get_app("/prod/web").tasks == []  # without embed=app.tasks

    assert [t.id for t in c.list_tasks("/prod/web")] == [web]
    assert len(c.list_tasks()) == 2
    assert c.ping() == b"pong"
    info = c.get_info()
    assert info.name == "marathon" and info.elected is True

    with pytest.raises(NotFoundError) as e:
        c.get_app("/nope")
    assert e.value.error_message == "App '/nope' does not exist"
    with pytest.raises(NotFoundError):
        c.list_tasks("/nope")


def test_the_raw_answers_follow_the_api_docs(marathon_double):
    double = marathon_double()
    double.add_app("/web", health_checks=1)
    tid = double.add_task("/web", "127.0.0.1", 8080, alive=False)
    app = requests.get(f"{double.url}/v2/apps/web?embed=app.tasks", timeout=5).json()["app"]
    task = app["tasks"][0]
    assert set(task) == {
        "id", "appId", "host", "ports", "servicePorts", "ipAddresses", "state", "slaveId",
        "stagedAt", "startedAt", "version", "healthCheckResults",
    }  # fmt: skip
    assert task["healthCheckResults"][0]["alive"] is False
    assert task["healthCheckResults"][0]["taskId"] == tid
    assert app["tasksUnhealthy"] == 1
    missing = requests.get(f"{double.url}/v2/apps/x/y", timeout=5)
    assert missing.status_code == 404
    assert missing.json() == {"message": "App '/x/y' does not exist"}
    listed = requests.get(f"{double.url}/v2/apps?embed=apps.tasks", timeout=5).json()
    assert listed["apps"][0]["tasks"][0]["id"] == tid
    events = requests.get(f"{double.url}/v2/events", timeout=5)  # no Accept: text/event-stream
    assert events.status_code == 406


def test_basic_auth_and_uri_prefix(marathon_double):
    double = marathon_double(basic_auth=("user", "secret"), uri_prefix="/marathon")
    double.add_app("/web")
    assert double.url.endswith("/marathon")
    with pytest.raises(MarathonHttpError) as e:
        client(double).list_apps()
    assert e.value.status_code == 401
    with pytest.raises(MarathonHttpError):
        client(double, username="user", password="wrong").list_apps()
    assert [a.id for a in client(double, username="user", password="secret").list_apps()] == [
        "/web"
    ]
    root = requests.get(
        f"http://127.0.0.1:{double.port}/v2/apps", auth=("user", "secret"), timeout=5
    )
    assert root.status_code == 404  # the API is only under the prefix
    statuses = [c.status for c in double.calls]
    assert statuses == [401, 401, 200, 404]
    assert double.calls[2].path == "/v2/apps"  # recorded without the prefix


def test_event_stream(marathon_double):
    double = marathon_double(keepalive=0.1)
    double.add_app("/web", health_checks=1)
    first = double.add_task("/web", "127.0.0.1", 8080)
    c = client(double)
    events: list[object] = []
    done = threading.Event()

    def consume() -> None:
        wanted = ["event_stream_attached", "status_update_event", "health_status_changed_event"]
        try:
            for event in c.event_stream(event_types=wanted):
                events.append(event)
                if len(events) == 4:
                    break
        except Exception as e:  # reported by the assertions below
            events.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=consume, name="marathon-events", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not any(isinstance(e, MarathonEventStreamAttached) for e in events):
        assert time.monotonic() < deadline, f"no event_stream_attached: {events}"
        time.sleep(0.02)
    time.sleep(0.3)  # a few keep-alives go by: they are not events
    second = double.add_task("/web", "127.0.0.1", 8081)
    double.add_app("/other")  # api_post_event: filtered out
    double.set_health(first, False)
    double.kill_task(second)
    assert done.wait(15), f"events so far: {events}"
    thread.join(5)
    assert [type(e) for e in events] == [
        MarathonEventStreamAttached,
        MarathonStatusUpdateEvent,
        MarathonHealthStatusChangedEvent,
        MarathonStatusUpdateEvent,
    ]
    assert (events[1].task_id, events[1].task_status, events[1].ports) == (
        second,
        "TASK_RUNNING",
        [8081],
    )
    assert (events[2].task_id, events[2].app_id) == (first, "/web")
    assert (events[3].task_id, events[3].task_status) == (second, "TASK_KILLED")


def test_stopping_the_double_ends_event_streams(marathon_double):
    double = marathon_double(keepalive=0.1)
    c = client(double)
    ended = threading.Event()
    seen: list[object] = []

    def consume() -> None:
        try:
            seen.extend(c.event_stream())
        except Exception as e:
            seen.append(e)
        finally:
            ended.set()

    threading.Thread(target=consume, name="marathon-events", daemon=True).start()
    deadline = time.monotonic() + 15
    while not seen:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    double.stop()
    assert ended.wait(15)
    assert isinstance(seen[0], MarathonEventStreamAttached)


def test_failures_delays_and_restarts(marathon_double):
    double = marathon_double()
    double.add_app("/web")
    tid = double.add_task("/web", "127.0.0.1", 8080)
    c = client(double)
    double.fail(503, count=2)
    for _ in range(2):
        with pytest.raises(InternalServerError) as e:
            c.list_apps()
        assert e.value.status_code == 503
    assert [a.id for a in c.list_apps()] == ["/web"]  # the count ran out
    double.fail(500)
    with pytest.raises(InternalServerError):
        c.get_app("/web")
    double.fail(None)

    double.delay(0.5)
    started = time.monotonic()
    c.ping()
    assert time.monotonic() - started >= 0.45
    double.delay(0)

    double.stop()
    with pytest.raises(marathon.exceptions.NoResponseError):
        c.ping()
    double.kill_task(tid)  # changed while down
    double.add_task("/web", "127.0.0.1", 8081)
    double.start()  # same port, same state
    assert [t.ports for t in c.list_tasks("/web")] == [[8081]]


def test_dcos_login_issues_tokens(marathon_double):
    import jwt
    from marathon_test_helpers import rsa_key_pair

    private, public = rsa_key_pair()
    double = marathon_double(dcos_public_key=public, dcos_uid="svc")
    double.add_app("/web")
    with pytest.raises(MarathonHttpError) as e:
        client(double).list_apps()
    assert e.value.status_code == 401
    token = jwt.encode({"uid": "svc"}, private, algorithm="RS256")
    login = requests.post(double.login_url, json={"uid": "svc", "token": token}, timeout=5)
    assert login.status_code == 200
    issued = login.json()["token"]
    assert [a.id for a in client(double, auth_token=issued).list_apps()] == ["/web"]
    other, _ = rsa_key_pair()
    forged = jwt.encode({"uid": "svc"}, other, algorithm="RS256")
    bad = requests.post(double.login_url, json={"uid": "svc", "token": forged}, timeout=5)
    assert bad.status_code == 401
    double.expire_tokens()
    with pytest.raises(MarathonHttpError):
        client(double, auth_token=issued).list_apps()
