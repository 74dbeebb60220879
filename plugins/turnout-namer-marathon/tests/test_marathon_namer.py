"""The namer against the Marathon API double (in this process, over real HTTP): routing follows
task changes within the poll interval, outages keep the last good set and say so, start-up
outages fail fast then recover, health filtering, auth, TLS, and no leaks."""

from __future__ import annotations

import asyncio
import base64
import json
import os

from marathon_test_helpers import (
    bound_of,
    eventually,
    make_namer,
    path,
    ports_of,
    rsa_key_pair,
    run,
    self_signed,
)
from turnout.naming import AddrBound, AddrFailed, Failed, Neg, Ok, Path
from turnout.testing import open_fds
from turnout_namer_marathon.auth import BASIC_ENV, DCOS_ENV

# ttlMs is 100 in these tests (jitter 10): "within the refresh interval" is checked with a
# generous bound, since the machine may be loaded.


def test_routes_follow_task_changes(marathon_double):
    double = marathon_double()
    double.add_app("/prod/web")
    t1 = double.add_task("/prod/web", "127.0.0.1", 9001)

    async def main():
        namer, metrics = make_namer(double.port)
        act = namer.lookup(path("/prod/web/rest"))
        obs = act.observe(lambda _: None)
        await eventually(lambda: ports_of(act) == [9001])
        bound = bound_of(act.value)
        assert bound.id == Path.read("/#/io.l5d.marathon/prod/web")
        assert bound.residual == Path.read("/rest")
        t2 = double.add_task("/prod/web", "127.0.0.1", 9002)
        await eventually(lambda: ports_of(act) == [9001, 9002])
        double.kill_task(t1)
        await eventually(lambda: ports_of(act) == [9002])
        double.kill_task(t2)  # no tasks left: Neg, as in Linkerd
        await eventually(lambda: act.value == Ok(Neg))
        double.add_task("/prod/web", "127.0.0.1", 9003)
        await eventually(lambda: ports_of(act) == [9003])
        assert metrics.flat()["namer/#/io.l5d.marathon/updates"] >= 4
        state = namer.state()
        assert state["watches"]["/prod/web"]["addresses"] == ["127.0.0.1:9003"]
        assert state["apps"]["appIds"] == ["/prod/web"] and state["apps"]["state"] == "ok"
        assert [str(p) for p in namer.bound_names()] == ["/#/io.l5d.marathon/prod/web"]
        obs.close()
        await namer.close()

    run(main())
    assert double.count("/v2/apps/prod/web") >= 5  # polled, with embed=app.tasks
    polls = [c for c in double.calls if c.path == "/v2/apps/prod/web"]
    assert polls[0].query == "embed=app.tasks"


def test_app_ids_decide_names(marathon_double):
    double = marathon_double()
    double.add_app("/web")
    double.add_task("/web", "127.0.0.1", 9001)
    double.add_app("/web/v2")
    double.add_task("/web/v2", "127.0.0.1", 9002)
    double.add_app("/idle")

    async def main():
        namer, _ = make_namer(double.port)
        acts = {p: namer.lookup(path(p)) for p in ["/web/v2", "/Web", "/nope", "/idle", "/added"]}
        obs = [a.observe(lambda _: None) for a in acts.values()]
        # the shortest app id wins: /web/v2 is app /web with residual /v2
        await eventually(lambda: ports_of(acts["/web/v2"]) == [9001])
        assert bound_of(acts["/web/v2"].value).residual == Path.read("/v2")
        await eventually(lambda: ports_of(acts["/Web"]) == [9001])
        await eventually(lambda: acts["/nope"].value == Ok(Neg))
        await eventually(lambda: acts["/idle"].value == Ok(Neg))  # an app without tasks
        await eventually(lambda: acts["/added"].value == Ok(Neg))
        double.add_task("/added", "127.0.0.1", 9004)  # a new app appears
        await eventually(lambda: ports_of(acts["/added"]) == [9004])
        double.remove_app("/web")  # now /web/v2 is its own app
        await eventually(lambda: ports_of(acts["/web/v2"]) == [9002])
        await eventually(lambda: acts["/Web"].value == Ok(Neg))
        assert namer.lookup(Path.empty).value == Ok(Neg)
        for o in obs:
            o.close()
        await namer.close()

    run(main())


def test_watches_are_lazy(marathon_double):
    double = marathon_double()
    double.add_task("/web", "127.0.0.1", 9001)

    async def main():
        namer, metrics = make_namer(double.port)
        act = namer.lookup(path("/web"))
        await asyncio.sleep(0.3)
        assert double.count("/v2/apps") == 0  # nothing routes to it: nothing is polled
        obs = act.observe(lambda _: None)
        await eventually(lambda: ports_of(act) == [9001])
        assert metrics.flat()["namer/#/io.l5d.marathon/watches"] == 1
        obs.close()
        await asyncio.sleep(0.2)
        assert namer.active_watches() == 0 and namer.apps.task is None
        before = double.count("/v2/apps")
        await asyncio.sleep(0.4)
        assert double.count("/v2/apps") == before  # both polls stopped
        await namer.close()

    run(main())


def test_an_outage_keeps_the_last_good_set_and_recovery_picks_up_changes(marathon_double):
    double = marathon_double()
    double.add_app("/web")
    t1 = double.add_task("/web", "127.0.0.1", 9001)

    async def main():
        namer, metrics = make_namer(double.port)
        act = namer.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        await eventually(lambda: ports_of(act) == [9001])
        await asyncio.to_thread(double.stop)  # killed: connections refused
        await eventually(lambda: namer.state()["watches"]["/web"]["errors"] >= 3)
        await asyncio.sleep(0.5)
        assert ports_of(act) == [9001]  # still serving the last good set
        state = namer.state()
        watch = state["watches"]["/web"]
        assert watch["state"] == "bound" and watch["addresses"] == ["127.0.0.1:9001"]
        assert "Cannot connect" in watch["lastError"] and watch["errorSince"] is not None
        assert watch["staleSeconds"] > 0.3
        assert state["apps"]["state"] == "ok" and "Cannot connect" in state["apps"]["lastError"]
        assert state["apps"]["appIds"] == ["/web"]  # the last good app list too
        flat = metrics.flat()
        assert flat["namer/#/io.l5d.marathon/stale_seconds"] > 0.3
        assert flat["namer/#/io.l5d.marathon/errors"] >= 3

        # the tasks change while Marathon is down; it comes back on the same port
        double.kill_task(t1)
        double.add_task("/web", "127.0.0.1", 9002)
        await asyncio.to_thread(double.start)
        await eventually(lambda: ports_of(act) == [9002])
        await eventually(lambda: namer.state()["watches"]["/web"]["errorSince"] is None)
        await eventually(lambda: metrics.flat()["namer/#/io.l5d.marathon/stale_seconds"] == 0)
        assert namer.state()["watches"]["/web"]["staleSeconds"] == 0
        obs.close()
        await namer.close()

    run(main())


def test_5xx_and_slow_answers_keep_the_last_good_set(marathon_double):
    double = marathon_double()
    double.add_task("/web", "127.0.0.1", 9001)

    async def main():
        namer, _ = make_namer(double.port, request_timeout_ms=300)
        act = namer.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        await eventually(lambda: ports_of(act) == [9001])
        double.fail(503)
        await eventually(lambda: namer.state()["watches"]["/web"]["errors"] >= 2)
        assert ports_of(act) == [9001]
        assert "HTTP 503: injected failure 503" in namer.state()["watches"]["/web"]["lastError"]
        assert "HTTP 503" in namer.state()["apps"]["lastError"]
        double.fail(None)
        double.delay(1.0)  # slower than requestTimeoutMs
        await eventually(
            lambda: "no answer within 0.3s" in (namer.state()["watches"]["/web"]["lastError"])
        )
        assert ports_of(act) == [9001]
        double.delay(0)
        double.add_task("/web", "127.0.0.1", 9002)
        await eventually(lambda: ports_of(act) == [9001, 9002])
        obs.close()
        await namer.close()

    run(main())


def test_down_at_start_fails_fast_then_recovers_by_itself(marathon_double):
    double = marathon_double(start=False)
    double.add_task("/web", "127.0.0.1", 9001)

    async def main():
        namer, _ = make_namer(double.port)
        act = namer.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        # not Pending until some binding timeout: failed, with Marathon's error, at once
        state = await eventually(lambda: act.value if isinstance(act.value, Failed) else None, 5)
        assert "Cannot connect" in str(state.error)
        assert namer.state()["apps"]["state"] == "failed"
        await asyncio.sleep(0.5)
        await asyncio.to_thread(double.start)
        await eventually(lambda: ports_of(act) == [9001])
        obs.close()
        await namer.close()

    run(main())


def test_an_app_that_fails_before_its_first_answer_binds_to_a_failure(marathon_double):
    double = marathon_double()
    double.add_task("/web", "127.0.0.1", 9001)

    async def main():
        namer, _ = make_namer(double.port)
        # the app list was read, then Marathon went away before the app's first poll
        namer.apps.var.update(frozenset({Path.read("/web")}))
        await asyncio.to_thread(double.stop)
        act = namer.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        await eventually(lambda: bound_of(act.value) is not None)
        addr = bound_of(act.value).addr
        await eventually(lambda: isinstance(addr.value, AddrFailed))
        assert "io.l5d.marathon /web: MarathonError" in addr.value.cause
        await asyncio.to_thread(double.start)
        await eventually(lambda: ports_of(act) == [9001])
        obs.close()
        await namer.close()

    run(main())


def test_use_health_check(marathon_double):
    double = marathon_double()
    double.add_app("/web", health_checks=1)
    healthy = double.add_task("/web", "127.0.0.1", 9001)
    sick = double.add_task("/web", "127.0.0.1", 9002, alive=False)
    fresh = double.add_task("/web", "127.0.0.1", 9003, alive=[])  # no result yet

    async def main():
        all_tasks, _ = make_namer(double.port)
        checked, _ = make_namer(double.port, use_health_check=True)
        every = all_tasks.lookup(path("/web"))
        only = checked.lookup(path("/web"))
        obs = [every.observe(lambda _: None), only.observe(lambda _: None)]
        await eventually(lambda: ports_of(every) == [9001, 9002, 9003])
        await eventually(lambda: ports_of(only) == [9001])
        double.set_health(sick, True)
        double.set_health(fresh, True)
        await eventually(lambda: ports_of(only) == [9001, 9002, 9003])
        double.set_health(healthy, False)
        double.set_task_state(fresh, "TASK_KILLING")
        await eventually(lambda: ports_of(only) == [9002])
        assert ports_of(every) == [9001, 9002, 9003]
        double.set_health(sick, False)  # none healthy: Neg
        await eventually(lambda: only.value == Ok(Neg))
        for o in obs:
            o.close()
        await all_tasks.close()
        await checked.close()

    run(main())


def test_ip_per_task_apps(marathon_double):
    double = marathon_double()
    double.add_app("/ipt", ip_per_task_port=8080)
    double.add_task("/ipt", "10.9.9.9", [], ip_address="127.0.0.2")

    async def main():
        namer, _ = make_namer(double.port)
        act = namer.lookup(path("/ipt"))
        obs = act.observe(lambda _: None)
        await eventually(lambda: bound_of(act.value) is not None and ports_of(act))
        addr = bound_of(act.value).addr.value
        assert isinstance(addr, AddrBound)
        assert [(a.host, a.port) for a in addr.addresses] == [("127.0.0.2", 8080)]
        obs.close()
        await namer.close()

    run(main())


def test_basic_auth_from_the_environment(marathon_double):
    double = marathon_double(basic_auth=("linkerd", "s3cret"), uri_prefix="/marathon")
    double.add_task("/web", "127.0.0.1", 9001)
    encoded = base64.b64encode(b"linkerd:s3cret").decode()

    async def main():
        namer, _ = make_namer(double.port, uri_prefix="/marathon", environ={BASIC_ENV: encoded})
        act = namer.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        await eventually(lambda: ports_of(act) == [9001])
        obs.close()
        await namer.close()

        anonymous, _ = make_namer(double.port, uri_prefix="/marathon")
        act = anonymous.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        state = await eventually(lambda: act.value if isinstance(act.value, Failed) else None)
        assert "UnauthorizedError" in str(state.error) and "HTTP 401" in str(state.error)
        obs.close()
        await anonymous.close()

    run(main())
    sent = {c.headers.get("Authorization") for c in double.calls if c.status == 200}
    assert sent == {f"Basic {encoded}"}
    assert all(c.path.startswith("/v2/apps") for c in double.calls)


def test_dcos_service_account_login(marathon_double):
    private, public = rsa_key_pair()
    double = marathon_double(dcos_public_key=public, dcos_uid="linkerd")
    double.add_task("/web", "127.0.0.1", 9001)
    secret = {
        "login_endpoint": double.login_url,
        "private_key": private,
        "scheme": "RS256",
        "uid": "linkerd",
    }

    async def main():
        namer, _ = make_namer(double.port, environ={DCOS_ENV: json.dumps(secret)})
        act = namer.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        await eventually(lambda: ports_of(act) == [9001])
        assert double.logins == 1  # one token shared by the app-list and the app polls
        token = next(iter(double.tokens))
        double.expire_tokens()  # the token expires: 401, one new login, no error shown
        double.add_task("/web", "127.0.0.1", 9002)
        await eventually(lambda: ports_of(act) == [9001, 9002])
        assert double.logins == 2
        assert namer.state()["watches"]["/web"]["errors"] == 0
        assert namer.state()["marathon"]["auth"] == {"kind": "dcos", "uid": "linkerd"}
        obs.close()
        await namer.close()
        return token

    token = run(main())
    headers = [c.headers.get("Authorization") for c in double.calls if c.path.startswith("/v2")]
    assert f"token={token}" in headers
    assert all(h is None or h.startswith("token=") for h in headers)


def test_dcos_login_refused_is_an_error_shown_in_state(marathon_double):
    private, _ = rsa_key_pair()
    _, other_public = rsa_key_pair()
    double = marathon_double(dcos_public_key=other_public)
    double.add_task("/web", "127.0.0.1", 9001)
    secret = {"login_endpoint": double.login_url, "private_key": private}
    secret |= {"scheme": "RS256", "uid": "linkerd"}

    async def main():
        namer, _ = make_namer(double.port, environ={DCOS_ENV: json.dumps(secret)})
        act = namer.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        state = await eventually(lambda: act.value if isinstance(act.value, Failed) else None)
        assert "Invalid authentication credentials" in str(state.error)
        obs.close()
        await namer.close()

    run(main())


def test_tls(marathon_double, tmp_path):
    import ssl

    cert, key = self_signed(tmp_path, "marathon.test")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    double = marathon_double(ssl_context=server)
    double.add_task("/web", "127.0.0.1", 9001)
    assert double.url.startswith("https://")

    async def main():
        tls = {"common_name": "marathon.test", "trust_certs": [str(cert)]}
        from turnout.config.model import ClientTlsConfig

        namer, _ = make_namer(double.port, tls=ClientTlsConfig(**tls))
        act = namer.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        await eventually(lambda: ports_of(act) == [9001])
        obs.close()
        await namer.close()

        untrusted, _ = make_namer(double.port, tls=ClientTlsConfig(common_name="marathon.test"))
        act = untrusted.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        state = await eventually(lambda: act.value if isinstance(act.value, Failed) else None)
        assert "CERTIFICATE_VERIFY_FAILED" in str(state.error)
        obs.close()
        await untrusted.close()

        unchecked, _ = make_namer(double.port, tls=ClientTlsConfig(disable_validation=True))
        act = unchecked.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        await eventually(lambda: ports_of(act) == [9001])
        obs.close()
        await unchecked.close()

    run(main())


def test_no_leaks_across_100_failed_polls(marathon_double):
    double = marathon_double()
    double.add_task("/web", "127.0.0.1", 9001)

    async def main():
        initial = len(asyncio.all_tasks())  # this test's own
        namer, metrics = make_namer(double.port, ttl_ms=20, jitter_ms=0)
        act = namer.lookup(path("/web"))
        obs = act.observe(lambda _: None)
        await eventually(lambda: ports_of(act) == [9001])
        await asyncio.sleep(0.1)
        tasks_before = len(asyncio.all_tasks())
        fds_before = open_fds(os.getpid())

        def errors() -> int:
            return metrics.flat()["namer/#/io.l5d.marathon/errors"]

        double.fail(503)  # Marathon answers, with errors: connections are reused
        await eventually(lambda: errors() >= 100, 60)
        double.fail(None)
        await asyncio.to_thread(double.stop)  # refused: no connection at all
        base = errors()
        await eventually(lambda: errors() >= base + 100, 60)
        await asyncio.to_thread(double.start)
        double.add_task("/web", "127.0.0.1", 9002)
        await eventually(lambda: ports_of(act) == [9001, 9002])
        await asyncio.sleep(0.1)
        assert ports_of(act) == [9001, 9002]
        assert len(asyncio.all_tasks()) == tasks_before
        assert open_fds(os.getpid()) <= fds_before + 2
        assert namer.api.sessions_opened == 1  # one ClientSession for the namer's life
        session = namer.api.session
        obs.close()
        await namer.close()
        assert session.closed and namer.api.session is None
        assert len(asyncio.all_tasks()) == initial  # every poll task ended

    run(main())
