"""Fixtures shared by the adversarial tests of a module whose `server` fixture is the fanout
under attack: the Bystander (tests/support/bystander.py) lives for the module and is
checked after every test that asks for `bystander`."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.bystander import Bystander


@pytest.fixture(scope="module")
def everyone_else(server: Any) -> Iterator[Bystander]:
    with Bystander(server) as bystander:
        yield bystander


@pytest.fixture
def bystander(server: Any, everyone_else: Bystander) -> Iterator[Bystander]:
    """The Bystander, checked after the test: untouched, and the server up and clean."""
    yield everyone_else
    everyone_else.assert_untouched()
    assert server.proc.poll() is None, server.output()
    assert "Traceback" not in server.output(), server.output()
