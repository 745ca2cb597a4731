"""Test-wide settings: one thread, no tracker, offline, and no network outside loopback."""
from __future__ import annotations

import ipaddress
import os
import socket

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["WANDB_MODE"] = "disabled"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("EFFBENCH_PLUGINS", "tests.toy.plugin")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


class NetworkBlocked(RuntimeError):
    pass


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):          # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guard(method):
    def wrapped(self, address, *a, **k):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
            raise NetworkBlocked(f"test tried to reach {address!r}: tests must not use the network")
        return method(self, address, *a, **k)
    return wrapped


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    socket.socket.connect = _guard(_real_connect)
    socket.socket.connect_ex = _guard(_real_connect_ex)
    yield
    socket.socket.connect, socket.socket.connect_ex = _real_connect, _real_connect_ex


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


def pytest_collection_finish(session):
    """A full run needs most zoo models: on a cold cache, train them two at a time (one thread each)
    before the tests start, instead of one by one inside the first test that needs each."""
    if len(session.items) < 100 or os.environ.get("EFFBENCH_TEST_PREBUILD", "1") == "0":
        return
    from benchmarks import zoo

    missing = [n for n in zoo.ZOO.names() if not zoo.is_built(n)]
    if missing:
        print(f"\n[effbench] training {len(missing)} zoo models for the tests (cached in {zoo.home()}): {', '.join(missing)}")
        zoo.build_many(missing, jobs=2)
