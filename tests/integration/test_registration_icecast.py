"""A real Icecast 2.4.4 master answers the extended registration (issue 12 §1): the load
report and TLS port fanout adds to KH's `?rserver=&rport=&interval=` are ignored, and the longest
registration still fits the head buffer Icecast reads a request into."""
from __future__ import annotations

import pytest

from fanout.protocol.redirect import MAX_REGISTRATION_QUERY, SlaveLoad, registration_query
from fanout.protocol.upstream import render_streamlist_request
from tests.support.clients import Source, raw_request
from tests.support.icecast import needs_icecast2, start_icecast2
from tests.support.server import RELAY_PASSWORD
from tests.support.waiting import wait_for

pytestmark = needs_icecast2

# Icecast 2.4.4 reads a request head into one PER_CLIENT_REFBUF_SIZE buffer (4096 bytes).
ICECAST_HEAD_BUFFER = 4096


@pytest.fixture(scope="module")
def master():
    server = start_icecast2()
    source = Source(server.host, server.port, "/live.mp3", content_type="audio/mpeg")
    try:
        assert source.accepted, source.response
        source.send_pattern(16384)
        yield server
    finally:
        source.close()
        server.stop()


def longest_registration() -> str:
    mounts = tuple((f"/{'m' * 60}{i}", i) for i in range(200))  # more than fits
    query = registration_query("relay-with-a-long-name.example.org", 8000, 30,
                               SlaveLoad(20000, 30000, True, 0.5, mounts), tls_port=8443)
    assert len(query) > MAX_REGISTRATION_QUERY - 80  # filled up to the bound
    return query


def test_icecast2_answers_the_longest_extended_registration_with_its_list(master):
    request = render_streamlist_request("/admin/streamlist.txt" + longest_registration(),
                                        "relay", RELAY_PASSWORD)
    assert len(request) < ICECAST_HEAD_BUFFER

    def listed() -> bytes | None:
        answer = raw_request(master.host, master.port, request)
        return answer if b"/live.mp3" in answer else None

    answer = wait_for(listed, 10, "the mount in icecast2's answer to the extended poll")
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n")
    assert answer.split(b"\r\n\r\n", 1)[1] == b"/live.mp3\r\n"
