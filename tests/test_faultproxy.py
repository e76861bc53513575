"""The fault proxy really injects its faults, and boto3 (standard retries) survives them.

Real parts only: moto's S3 server (and the vault stand-in) behind the proxy, the real boto3
client in front, and a tiny echo server for the chunked-encoding case.
"""

import http.client
import io
import socket
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (ClientError, ConnectionClosedError, IncompleteReadError,
                                 ReadTimeoutError, ResponseStreamingError)
from moto.server import ThreadedMotoServer

from tests.servers.faultproxy import FaultProxy
from tests.servers.glacier_vault import GlacierStandIn

MIB = 1 << 20


@pytest.fixture(scope="module")
def moto_port():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield server.get_host_and_port()[1]
    server.stop()


@pytest.fixture
def proxy(moto_port):
    with FaultProxy(moto_port, stall_seconds=3.0) as p:
        yield p


def s3_client(url, read_timeout=2.0, attempts=4):
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts},
                      connect_timeout=1, read_timeout=read_timeout,
                      s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(proxy):
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3_client(proxy.url).create_bucket(Bucket=name)
    return name


def retries(resp):
    return resp["ResponseMetadata"]["RetryAttempts"]


def outcomes(proxy, method=None):
    return [kind for kind, line in proxy.events if method is None or line.startswith(method + " ")]


def test_clean_traffic_passes_with_keep_alive(proxy, bucket):
    s3 = s3_client(proxy.url)
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x" * i)
        assert s3.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read() == b"x" * i
    assert not proxy.injected
    assert proxy.passed == proxy.requests == proxy.forwarded >= 11
    assert proxy.connections < proxy.requests  # several requests per connection


@pytest.mark.parametrize("kind", ["reset", "drop", "http500", "http503"])
def test_put_survives(proxy, bucket, kind):
    s3 = s3_client(proxy.url)
    data = bytes(range(256)) * 400
    proxy.inject(kind, when=f"^PUT /{bucket}/key ")
    resp = s3.put_object(Bucket=bucket, Key="key", Body=io.BytesIO(data))  # file body: Expect 100
    assert retries(resp) >= 1
    assert proxy.injected == {kind: 1}
    assert outcomes(proxy, "PUT")[-2:] == [kind, "passed"]
    assert s3.get_object(Bucket=bucket, Key="key")["Body"].read() == data


@pytest.mark.parametrize("kind", ["reset", "drop", "http500", "http503"])
def test_get_survives(proxy, bucket, kind):
    s3 = s3_client(proxy.url)
    data = b"payload" * 1000
    s3.put_object(Bucket=bucket, Key="key", Body=data)
    proxy.inject(kind, when=lambda req: req.method == "GET" and req.target.endswith("/key"))
    resp = s3.get_object(Bucket=bucket, Key="key")
    assert resp["Body"].read() == data and retries(resp) >= 1
    assert proxy.injected == {kind: 1} and proxy.pending() == 0


def test_faults_on_one_part_only(proxy, bucket):
    s3 = s3_client(proxy.url)
    parts = [bytes([i]) * (5 * MIB) for i in (1, 2)] + [b"tail"]
    proxy.inject("reset", count=2, when=lambda r: r.method == "PUT" and "partNumber=3" in r.target)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    etags = []
    for number, body in enumerate(parts, 1):
        resp = s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=number,
                              Body=io.BytesIO(body))
        etags.append({"PartNumber": number, "ETag": resp["ETag"]})
        assert retries(resp) == (2 if number == 3 else 0)
    s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload,
                                 MultipartUpload={"Parts": etags})
    part_events = [(kind, "partNumber=3" in line) for kind, line in proxy.events
                   if line.startswith("PUT ") and "partNumber=" in line]
    assert part_events == [("passed", False), ("passed", False),
                           ("reset", True), ("reset", True), ("passed", True)]
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == b"".join(parts)


def test_stall_longer_than_read_timeout_causes_a_retry(proxy, bucket):
    s3 = s3_client(proxy.url, read_timeout=0.5)
    proxy.inject("stall", when="^PUT ", seconds=3.0)
    resp = s3.put_object(Bucket=bucket, Key="slow", Body=b"abc")
    assert retries(resp) >= 1 and proxy.injected == {"stall": 1}
    assert s3.get_object(Bucket=bucket, Key="slow")["Body"].read() == b"abc"


def test_stall_mid_answer(proxy, bucket):
    s3 = s3_client(proxy.url, read_timeout=0.5)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v" * 5000)
    proxy.inject("stall_body", when=r"^GET .*list-type=2", after_bytes=20, seconds=3.0)
    resp = s3.list_objects_v2(Bucket=bucket)  # botocore reads the whole body: it retries
    assert resp["KeyCount"] == 1 and retries(resp) >= 1
    proxy.inject("stall_body", when=f"^GET /{bucket}/k ", after_bytes=100, seconds=3.0)
    body = s3.get_object(Bucket=bucket, Key="k")["Body"]  # a stream: the caller sees the stall
    with pytest.raises(ReadTimeoutError):
        body.read()
    assert proxy.injected == {"stall_body": 2}


def test_truncated_answers(proxy, bucket):
    s3 = s3_client(proxy.url)
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789" * 1000)
    proxy.inject("truncate", when=r"^GET .*list-type=2")
    resp = s3.list_objects_v2(Bucket=bucket)
    assert resp["KeyCount"] == 1 and retries(resp) == 1
    proxy.inject("truncate", when=f"^GET /{bucket}/k ", after_bytes=4000)
    body = s3.get_object(Bucket=bucket, Key="k")["Body"]
    with pytest.raises((ResponseStreamingError, IncompleteReadError)):
        body.read()
    assert proxy.injected == {"truncate": 2}


def test_truncate_waits_for_an_answer_with_a_body(proxy, bucket):
    s3 = s3_client(proxy.url)
    fault = proxy.inject("truncate", when="^PUT ")  # PUT answers have no body: nothing to cut
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert fault.hits == 0 and proxy.pending() == 1 and not proxy.injected


def test_lost_answer_means_the_request_did_happen(proxy, bucket):
    once = s3_client(proxy.url, attempts=1)
    proxy.inject("drop_response", when="^PUT ")
    with pytest.raises(ConnectionClosedError):
        once.put_object(Bucket=bucket, Key="ghost", Body=b"boo")
    assert proxy.injected == {"drop_response": 1}
    assert once.get_object(Bucket=bucket, Key="ghost")["Body"].read() == b"boo"


def test_unbounded_fault_exhausts_retries_until_cleared(proxy, bucket):
    s3 = s3_client(proxy.url, attempts=2)
    proxy.inject("http503", count=None, when="^PUT ")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert e.value.response["Error"]["Code"] == "SlowDown"
    assert proxy.injected["http503"] == 2
    proxy.clear()
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert proxy.injected["http503"] == 2


def test_json_flavor_in_front_of_the_vault_stand_in():
    with GlacierStandIn() as standin, FaultProxy(standin.url, flavor="json") as proxy:
        glacier = boto3.client(
            "glacier", endpoint_url=proxy.url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(retries={"mode": "standard", "total_max_attempts": 4}))
        glacier.create_vault(vaultName="v")
        proxy.inject("http500", when=r"^POST .*/archives ")
        proxy.inject("http503", when=r"^POST .*/archives ")
        resp = glacier.upload_archive(vaultName="v", body=b"data")
        assert retries(resp) == 2
        assert proxy.injected == {"http500": 1, "http503": 1}
        assert standin.calls["upload_archive"] == 1  # the faults never reached the server
        once = boto3.client(
            "glacier", endpoint_url=proxy.url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
        proxy.inject("http500")
        with pytest.raises(ClientError) as e:
            once.describe_vault(vaultName="v")
        assert e.value.response["Error"]["Code"] == "ServiceUnavailableException"


class _Echo(BaseHTTPRequestHandler):
    """Echoes the request body back with chunked encoding, decoding chunked requests itself."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in (body[:3], body[3:]):
            if piece:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")


def test_chunked_bodies_and_per_request_faults_on_one_connection():
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    Thread(target=echo.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with FaultProxy(echo.server_address[1]) as proxy:
            proxy.inject("http503", when="^POST /second ")
            conn = http.client.HTTPConnection("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]), timeout=5)
            conn.request("POST", "/first", body=iter([b"hello ", b"chunked ", b"world"]),
                         encode_chunked=True)
            resp = conn.getresponse()
            assert resp.read() == b"hello chunked world"
            conn.request("POST", "/second", body=b"abc")
            resp = conn.getresponse()
            assert resp.status == 503 and b"<Code>SlowDown</Code>" in resp.read()
            conn.request("POST", "/third", body=b"plain body")
            assert conn.getresponse().read() == b"plain body"
            conn.close()
            assert (proxy.connections, proxy.requests, proxy.passed) == (1, 3, 2)
            assert [k for k, _ in proxy.events] == ["passed", "http503", "passed"]
    finally:
        echo.shutdown()
        echo.server_close()


@pytest.mark.parametrize("upstream", [("10.1.2.3", 80), "http://example.com:80", ("0.0.0.0", 9)])
def test_only_loopback_upstreams(upstream):
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(upstream)


def test_unknown_fault_is_refused(proxy):
    with pytest.raises(ValueError):
        proxy.inject("explode")


def test_stop_closes_open_connections_and_stalls(moto_port):
    proxy = FaultProxy(moto_port)
    url = proxy.start()
    port = int(url.rsplit(":", 1)[1])
    proxy.inject("stall", seconds=600)
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
    stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(200):  # wait (bounded) until the proxy has the stalled request in hand
        if proxy.injected["stall"]:
            break
        time.sleep(0.01)
    assert proxy.injected["stall"] == 1
    proxy.stop()
    for sock in (idle, stalled):
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
