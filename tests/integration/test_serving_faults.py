"""A replica's process SIGKILLed under load: with `logad detect`'s retrying client no request fails.

Two Ingress replicas serve the line-level BGL model of tests/integration/test_serving.py
(the `unseen` rule: no torch training, so the set-up is quick). Six client threads post
1,000-line requests through ``logad.commands.detect.post`` while one replica's worker
process is killed with SIGKILL (again, up to three times, if a kill cut no request).
Ray Serve answers the requests that replica held with a plain-text 500 (it does not
resend them itself); the client resends those, the router sends them to the surviving replica, and every answer equals the one before the kill.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from test_serving import DATA_PIPELINES, FIXTURES, LIMITS, ROOT, _train_unseen, _zst_lines

from logad.commands.detect import post
from logad.sources.config import load_source_config

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory):
    from ray import serve

    from logad.registry import ModelRegistry
    from logad.serving.local import start, stop

    base = tmp_path_factory.mktemp("faults")
    lines = _zst_lines(FIXTURES / "loghub_2k" / "BGL_2k.log.zst")
    model = _train_unseen(base / "model", lines, load_source_config(DATA_PIPELINES / "bgl.yaml"))
    reg = ModelRegistry(base / "registry")
    reg.register(model, "bgl", promote=True)
    url = start(reg.root, port=0, config=ROOT / "serve" / "config.yaml", args=LIMITS,
                deployments={"Ingress": {"num_replicas": 2}}, log=lambda _: None)
    yield url, lines[:1000]
    stop()
    serve.shutdown()


def _post(url: str, lines: list[str], retried: list[str] | None = None) -> dict:
    body = json.dumps({"lines": lines}).encode()
    return post(url, "bgl", body, {"Content-Type": "application/json"}, explain="none", timeout=30,
                on_retry=None if retried is None else lambda n, why, wait: retried.append(why))


def test_a_sigkilled_replica_costs_no_request_with_the_retrying_client(two_replicas):
    from logad.serving.local import replica_pids

    url, lines = two_replicas
    ref = _post(url, lines)["windows"]
    assert len(replica_pids()) == 2, replica_pids()

    stop = threading.Event()
    answers: list[tuple[float, list]] = []
    errors: list[BaseException] = []
    retried: list[str] = []
    victims: list[int] = []

    def client() -> None:
        while not stop.is_set():
            try:
                answers.append((time.monotonic(), _post(url, lines, retried)["windows"]))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    def served_since(t: float) -> int:
        return sum(at > t for at, _ in answers)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        # A kill can land while the victim holds no request (the router then only steers
        # around it), which would test nothing; Serve replaces the replica, so kill again,
        # up to three times, until a request was cut and resent.
        for _ in range(3):
            start, deadline = time.monotonic(), time.monotonic() + 90
            while not errors and time.monotonic() < deadline and (
                    served_since(start) < 12 or len(pids := replica_pids()) < 2):
                time.sleep(0.05)
            if errors or time.monotonic() >= deadline:
                break
            victims.append(next(iter(pids.values())))
            os.kill(victims[-1], signal.SIGKILL)
            killed = time.monotonic()
            while served_since(killed) < 24 and not errors and time.monotonic() < killed + 60:
                time.sleep(0.05)
            if retried or errors or served_since(killed) < 24:
                break
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)

    assert not errors, errors
    assert victims, "the two replicas never served steadily"
    for victim in victims:
        with pytest.raises(ProcessLookupError):
            os.kill(victim, 0)
    assert served_since(killed) >= 24  # served on by the surviving replica
    assert all(windows == ref for _, windows in answers)
    # a kill cost requests their first answer (Serve's plain 500), and the client resent them
    assert retried and all("answered 500: Internal Server Error" in why or "cannot reach" in why
                           for why in retried), (retried, len(victims))
