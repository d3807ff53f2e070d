"""Hostile clients against a real gateway, over raw sockets: slow headers and slow bodies (slowloris), alone and
a hundred at once, and requests whose framing lies (Content-Length against the body, Transfer-Encoding beside
it, broken chunks). Each ends in a 4xx or a closed connection, never a 5xx; none holds an in-flight slot
past the body deadline; good requests sent meanwhile are answered; and the gateway answers the next one."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time

import httpx
import pytest

from .live import LiveGateway

pytestmark = pytest.mark.slow
DEADLINE_S = 3.0  # the gateway's header and body deadlines here
GIVE_UP_S = 30.0  # a client that is neither answered nor closed by then has stalled (the test's own bound)
V2 = "/v2/models/torch-onnx/infer"
BODY = b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8], "data": [' + b", ".join([b"0"] * 27 + [
    b"16"] + [b"0"] * 36) + b"]}]}"


@pytest.fixture(scope="module")
def live(repository):
    with LiveGateway(repository, header_timeout_s=DEADLINE_S, body_timeout_s=DEADLINE_S) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def http(live):
    with httpx.Client(base_url=live.url, timeout=60) as client:
        yield client


def connect(live) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=GIVE_UP_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(path: str = V2, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             *[f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (b"" if it closed without a word)."""
    received, deadline = b"", time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    else:
        raise AssertionError(f"neither answered nor closed in {GIVE_UP_S} s; received {received[:200]!r}")
    sock.close()
    return received


def statuses(received: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"^HTTP/1\.1 (\d{3}) ", received, re.MULTILINE)]


def trickle(sock: socket.socket, data: bytes, stop: threading.Event, every_s: float = 0.2) -> None:
    """Sends `data` a byte at a time until it is all sent, the server closes, or `stop` is set."""
    for byte in data:
        if stop.wait(every_s):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def in_flight(http) -> float:
    text = http.get("/metrics").text
    return float(re.search(r"^crossdeploy_requests_in_flight (\S+)$", text, re.MULTILINE).group(1))


def assert_good_request_answered(http) -> None:
    response = http.post(V2, content=BODY, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def still_open_and_unanswered(sock: socket.socket) -> bool:
    sock.setblocking(False)  # a socket with a timeout would wait for data before peeking
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True  # nothing to read yet: neither answered nor closed
    except OSError:
        return False
    finally:
        sock.settimeout(GIVE_UP_S)
    return False  # an answer, or the end of the connection


# --------------------------------------------------------------------------------------- slowloris
def test_a_body_that_does_not_arrive_in_time_is_answered_408_in_the_protocols_format(live, http):
    for path, shape in ((V2, '{"error": "the request body did not arrive'), ("/predictions/torch-onnx", '"code": 408')):
        sock, stop = connect(live), threading.Event()
        sock.sendall(head(path, Content_Length=str(len(BODY))))
        sender = threading.Thread(target=trickle, args=(sock, BODY, stop))
        sender.start()
        received = answer(sock)
        stop.set()
        sender.join()
        assert statuses(received) == [408], received[:300]
        assert shape.replace(" ", "").encode() in received.replace(b" ", b""), received[-300:]
    assert in_flight(http) == 0
    assert_good_request_answered(http)


def test_headers_that_never_end_are_answered_408_and_closed(live, http):
    sock, stop = connect(live), threading.Event()
    sock.sendall(f"POST {V2} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
    sender = threading.Thread(target=trickle, args=(sock, b"X-Slow: " + b"a" * 10_000, stop))
    sender.start()
    received = answer(sock)
    stop.set()
    sender.join()
    assert statuses(received) in ([408], []), received[:300]
    silent = connect(live)  # one that connects and says nothing is closed too
    assert statuses(answer(silent)) in ([408], [])
    assert_good_request_answered(http)


@pytest.mark.parametrize("kind", ["headers", "bodies"])
def test_a_hundred_slow_clients_at_once_stall_nobody_and_hold_nothing_after_the_deadline(live, http, kind):
    stop, socks, senders = threading.Event(), [], []
    for _ in range(100):
        sock = connect(live)
        if kind == "headers":
            sock.sendall(f"POST {V2} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
            rest = b"X-Slow: " + b"a" * 1000
        else:
            sock.sendall(head(V2, Content_Length=str(len(BODY))))
            rest = BODY
        socks.append(sock)
        senders.append(threading.Thread(target=trickle, args=(sock, rest, stop, 0.5)))
    for sender in senders:
        sender.start()
    try:
        for _ in range(3):  # answered while the slow ones are still open
            response = http.post(V2, content=BODY, headers={"Content-Type": "application/json"})
            # 100 slow bodies are more than max_in_flight (64): admission refuses the rest at once, with Retry-After
            assert response.status_code == 200 or (kind == "bodies" and response.status_code == 503
                                                   and "Retry-After" in response.headers), response.text
        assert any(still_open_and_unanswered(sock) for sock in socks)
        ends = [statuses(answer(sock)) for sock in socks]
    finally:
        stop.set()
        for sender in senders:
            sender.join()
    assert all(end in ([408], [503], []) for end in ends), sorted(map(str, ends))[:5]
    assert in_flight(http) == 0
    assert_good_request_answered(http)


# --------------------------------------------------------------------------------------- framing lies
LIES = {
    "Content-Length larger than the body, then nothing": head(Content_Length=str(len(BODY) + 10)) + BODY,
    "Content-Length smaller than the body": head(Content_Length=str(len(BODY) - 5)) + BODY,
    "Content-Length and chunked": head(Content_Length=str(len(BODY)), Transfer_Encoding="chunked")
    + b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY),
    "two Content-Lengths": head(Content_Length="10").replace(b"\r\n\r\n", f"\r\nContent-Length: {len(BODY)}\r\n\r\n".encode())
    + BODY,
    "negative Content-Length": head(Content_Length="-5") + BODY,
    "non-numeric Content-Length": head(Content_Length="12abc") + BODY,
    "Content-Length beyond 64 bits": head(Content_Length="9" * 30) + BODY,
    "Content-Length beyond the body limit": head(Content_Length=str(10**12)) + BODY,
    "a chunk size that is not hex": head(Transfer_Encoding="chunked") + b"zz\r\n" + BODY + b"\r\n0\r\n\r\n",
    "a chunk larger than what follows, then nothing": head(Transfer_Encoding="chunked") + b"%x\r\n" % (len(BODY) + 50) + BODY,
    "no final chunk": head(Transfer_Encoding="chunked") + b"%x\r\n%s\r\n" % (len(BODY), BODY),
}


@pytest.mark.parametrize("name", LIES)
def test_a_request_whose_framing_lies_gets_a_4xx_or_a_closed_connection_then_the_next_is_served(live, http, name):
    sock = connect(live)
    sock.sendall(LIES[name])
    received = answer(sock)
    assert all(400 <= status < 500 for status in statuses(received)), received[:300]
    assert in_flight(http) == 0
    assert_good_request_answered(http)


def test_a_client_gone_mid_body_is_no_server_error(live, http, caplog):
    sock = connect(live)
    sock.sendall(head(Content_Length=str(len(BODY))) + BODY[:20])
    time.sleep(0.5)  # let the request reach the route and wait for the rest of its body
    sock.close()
    with caplog.at_level(logging.ERROR):
        deadline = time.monotonic() + GIVE_UP_S
        while in_flight(http) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert in_flight(http) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert_good_request_answered(http)
