"""The compiled swarm over real sockets: what it reports for good and bad servers."""
from __future__ import annotations

import pytest

from fanout.bench import _swarm, payload
from fanout.bench.serving import free_port
from fanout.bench.swarm import SwarmSpec, child_configs, merge_results, run_swarm

OK_HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\n\r\n"
ICY_HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\nicy-metaint:1000\r\n\r\n"


def swarm_against(port: int, listeners: int = 2, **kwargs) -> dict:
    spec = SwarmSpec(host="127.0.0.1", port=port, path="/m", listeners=listeners,
                     duration=kwargs.pop("duration", 0.5), **kwargs)
    return run_swarm(spec)


def test_processes_share_the_listeners_in_global_order():
    spec = SwarmSpec("127.0.0.1", 1, "/m", listeners=10, duration=1, processes=3)
    configs = child_configs(spec)
    indexes = sorted(c["index_offset"] + i * c["index_stride"]
                     for c in configs for i in range(c["listeners"]))
    assert indexes == list(range(10))


def test_merged_results_add_counters_and_histograms():
    merged = merge_results([{"failed": 1, "counts": {"gaps": 1}, "ttfb_hist": [1, 0], "elapsed": 2.0},
                            {"failed": 2, "counts": {"gaps": 3}, "ttfb_hist": [0, 5], "elapsed": 3.0}])
    assert merged == {"failed": 3, "counts": {"gaps": 4}, "ttfb_hist": [1, 5], "elapsed": 3.0}


def test_clean_stream_from_a_server_verifies(canned_server):
    server = canned_server(OK_HEAD + payload.build_frames(0, 100, 0)[500:])
    result = swarm_against(server.port, listeners=3)
    assert result["established"] == 3 and result["failed"] == 0
    counts = result["counts"]
    assert counts["frames_ok"] == 3 * 98 and counts["corrupt_frames"] == 0
    assert result["error_listeners"] == 0


def test_duplicated_frame_from_a_server_is_reported(canned_server):
    body = payload.build_frames(0, 10, 0) + payload.build_frames(9, 20, 0)
    result = swarm_against(canned_server(OK_HEAD + body).port)
    assert result["counts"]["duplicates"] == 2 and result["error_listeners"] == 2


def test_gap_from_a_server_is_reported(canned_server):
    body = payload.build_frames(0, 10, 0) + payload.build_frames(15, 10, 0)
    result = swarm_against(canned_server(OK_HEAD + body).port)
    assert result["counts"]["gaps"] == 2 and result["counts"]["missing_frames"] == 10


def test_corrupted_byte_from_a_server_is_reported(canned_server):
    body = bytearray(payload.build_frames(0, 20, 0))
    body[5 * payload.FRAME_SIZE + 77] ^= 0xFF
    result = swarm_against(canned_server(OK_HEAD + bytes(body)).port, listeners=1)
    assert result["counts"]["corrupt_frames"] == 1 and result["counts"]["frames_ok"] == 19


def test_icy_blocks_from_a_server_are_stripped_when_asked(canned_server):
    body = payload.insert_icy(payload.build_frames(0, 30, 0), 1000,
                              [payload.icy_block(b"StreamTitle='bench';")])
    result = swarm_against(canned_server(ICY_HEAD + body).port, icy=True)
    counts = result["counts"]
    assert counts["icy_blocks"] == 2 * 11 and counts["icy_errors"] == 0
    assert counts["frames_ok"] == 2 * 30


def test_misplaced_icy_block_from_a_server_is_reported(canned_server):
    audio = payload.build_frames(0, 30, 0)
    body = audio[:1003] + payload.icy_block(b"StreamTitle='';") + audio[1003:]
    result = swarm_against(canned_server(ICY_HEAD + body).port, listeners=1, icy=True)
    assert result["counts"]["icy_errors"] >= 1 and result["error_listeners"] == 1


def test_refusal_is_a_failure_with_its_status(canned_server):
    server = canned_server(b"HTTP/1.0 404 File Not Found\r\nContent-Type: text/html\r\n\r\nno")
    result = swarm_against(server.port, listeners=3)
    assert result["failed"] == 3 and result["status_counts"] == {"404": 3}
    assert result["fail_reasons"] == {"status": 3}


def test_connection_refused_is_a_connect_failure():
    result = swarm_against(free_port(), listeners=2)
    assert result["failed"] == 2 and result["fail_reasons"] == {"connect": 2}


def test_one_redirect_is_followed(canned_server):
    target = canned_server(OK_HEAD + payload.build_frames(0, 10, 0))
    redirect = canned_server(
        f"HTTP/1.0 302 Found\r\nLocation: http://127.0.0.1:{target.port}/m\r\n\r\n".encode())
    result = swarm_against(redirect.port, listeners=2)
    assert result["redirected"] == 2 and result["established"] == 2
    assert result["counts"]["frames_ok"] == 20


def test_a_second_redirect_is_a_failure(canned_server):
    loop = canned_server(b"HTTP/1.0 302 Found\r\nLocation: http://127.0.0.1:1/m\r\n\r\n")
    loop.response = f"HTTP/1.0 302 Found\r\nLocation: http://127.0.0.1:{loop.port}/m\r\n\r\n".encode()
    result = swarm_against(loop.port, listeners=1)
    assert result["fail_reasons"] == {"redirect": 1}


def test_redirect_off_loopback_is_refused(canned_server):
    server = canned_server(b"HTTP/1.0 302 Found\r\nLocation: http://192.0.2.1:8000/m\r\n\r\n")
    result = swarm_against(server.port, listeners=1)
    assert result["fail_reasons"] == {"redirect": 1}


def test_swarm_refuses_a_target_off_loopback():
    with pytest.raises(ValueError, match="127.0.0.0/8"):
        _swarm.run({"host": "192.0.2.1", "port": 80, "paths": ["/"], "listeners": 1, "duration": 0.1})


def test_silent_server_is_a_stall(canned_server):
    server = canned_server(OK_HEAD + payload.build_frames(0, 5, 0))
    result = swarm_against(server.port, listeners=1, duration=1.5, stall_after=0.3)
    assert result["stalls"] == 1 and result["stall_seconds"] > 0.3


def test_listeners_are_spread_over_the_mounts_in_global_order(canned_server):
    server = canned_server(OK_HEAD + payload.build_frames(0, 10, 0))
    result = run_swarm(SwarmSpec("127.0.0.1", server.port, ("/a", "/b", "/c"), listeners=7,
                                 duration=0.5, processes=2))
    assert result["established"] == 7
    paths = sorted(line.split()[1] for line in server.requests)
    assert paths == [b"/a"] * 3 + [b"/b"] * 2 + [b"/c"] * 2


def test_time_to_first_byte_counts_from_socket_creation(canned_server):
    delay = 0.2
    server = canned_server(OK_HEAD + payload.build_frames(0, 10, 0), delay=delay)
    result = swarm_against(server.port, listeners=2, duration=0.6)
    floor = payload.hist_low(payload.hist_index(int(delay * 1e6)))  # its histogram bucket
    for name in ("ttfb_hist", "ttfb_loop_hist", "head_hist"):
        assert sum(result[name]) == 2
        assert payload.hist_percentile(result[name], 0.0) >= floor
    assert sum(result["connect_hist"]) == 2 and sum(result["open_lag_hist"]) == 2


def test_errors_on_a_connection_the_server_cut_are_counted_apart(canned_server):
    gapped = payload.build_frames(0, 10, 0) + payload.build_frames(15, 10, 0)
    cutting = canned_server(OK_HEAD + gapped, close=True)
    cut = swarm_against(cutting.port, listeners=2)
    assert cut["dropped"] == 2 and cut["counts"]["gaps"] == 2
    assert cut["cut_errors"] == 2 and cut["cut_error_listeners"] == 2
    held = swarm_against(canned_server(OK_HEAD + gapped).port, listeners=2)
    assert held["counts"]["gaps"] == 2 and held["cut_errors"] == 0


def test_a_dropped_listener_reconnects_when_asked(canned_server):
    server = canned_server(OK_HEAD + payload.build_frames(0, 10, 0), close=True)
    result = swarm_against(server.port, listeners=1, duration=0.6, reconnect_after=0.05)
    assert result["reconnects"] >= 1 and result["dropped"] >= 1
    # every connection but the first is a reconnection
    assert result["opened"] == 1 + result["reconnects"]


def test_churn_closes_established_listeners_and_opens_them_anew(canned_server):
    server = canned_server(OK_HEAD + payload.build_frames(0, 10, 0))
    result = swarm_against(server.port, listeners=2, duration=0.6, churn_rate=20)
    assert result["churned"] >= 1 and result["dropped"] == 0
    assert result["opened"] == 2 + result["churned"]
    assert result["established"] + result["pending"] == result["opened"]
    assert sum(result["counts"][name] for name in ("gaps", "duplicates", "corrupt_frames")) == 0
