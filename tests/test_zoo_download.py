"""Downloads into the cache, against a loopback HTTP server: complete and checked, or nothing at all.

No torch here: these failures happen before any conversion.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.zoo_fixtures import REPO_ROOT, LoopbackServer, files_under, serve_bytes, serve_cut, sha256
from xclip_jax import zoo
from xclip_jax.zoo import cache, registry
from xclip_jax.zoo.download import download_file


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
  root = tmp_path / "cache"
  monkeypatch.setenv(cache.CACHE_VARIABLE, str(root))
  return root


def test_a_download_is_streamed_with_progress_and_checked(tmp_path, capfd):
  data = os.urandom((1 << 20) + 12345)
  with LoopbackServer({"blob.bin": serve_bytes(data)}, max_requests=1) as server:
    digest = download_file(server.url + "blob.bin", tmp_path / "d" / "blob.bin", sha256=sha256(data))
  assert digest == sha256(data)
  assert (tmp_path / "d" / "blob.bin").read_bytes() == data
  assert files_under(tmp_path / "d") == ["blob.bin"]  # no temporary file left beside it
  progress = capfd.readouterr().err
  assert "blob.bin" in progress and "100%" in progress and "1.01M" in progress and "B/s" in progress


def test_a_wrong_checksum_is_an_error_and_nothing_is_cached(cache_root, monkeypatch):
  info = zoo.find_model("openai:ViT-B/16")
  data = b"not the released CLIP archive\n" * 1000
  with LoopbackServer({info.location: serve_bytes(data)}, max_requests=2) as server:
    monkeypatch.setenv(registry.OPENAI_URL_VARIABLE, server.url)
    with pytest.raises(zoo.DownloadError) as caught:
      zoo.fetch("openai:ViT-B/16", progress=False)
  assert server.requests == ["/" + info.location]  # the URL path carries OpenAI's SHA-256, as the real one
  message = str(caught.value)
  destination = cache_root / "downloads" / "openai" / "ViT-B-16.pt"
  for part in (info.url, sha256(data), info.sha256, str(destination), "curl -L -o ViT-B-16.pt"):
    assert part in message
  assert files_under(cache_root) == []


def test_a_transfer_cut_in_the_middle_leaves_no_partial_file(cache_root, monkeypatch):
  data = os.urandom(3 << 20)
  with LoopbackServer({"k400_16_8.pth": serve_cut(data, len(data) // 3)}, max_requests=2) as server:
    monkeypatch.setenv(registry.RELEASE_URL_VARIABLE, server.url)
    with pytest.raises(zoo.DownloadError, match=rf"cut after {len(data) // 3} of {len(data)} bytes") as caught:
      zoo.fetch("k400_16_8", progress=False)
  assert str(cache_root / "downloads" / "release" / "k400_16_8.pth") in str(caught.value)
  assert files_under(cache_root) == []


def test_no_server_and_http_errors_name_the_url_and_where_to_put_the_file(cache_root, monkeypatch):
  with LoopbackServer({}, max_requests=1) as server:
    monkeypatch.setenv(registry.RELEASE_URL_VARIABLE, server.url + "releases/")
    with pytest.raises(zoo.DownloadError, match="HTTP 404") as caught:
      zoo.fetch("zero", progress=False)
  assert f"{server.url}releases/zero.pth" in str(caught.value)
  # The server is gone now: connection refused.
  with pytest.raises(zoo.DownloadError, match=r"no connection .*copy it to .*downloads/release/zero\.pth"):
    zoo.fetch("zero", progress=False)
  assert files_under(cache_root) == []


def test_a_corrupt_file_put_in_the_cache_by_hand_is_named_and_kept(cache_root, monkeypatch):
  monkeypatch.setenv(registry.OPENAI_URL_VARIABLE, "http://127.0.0.1:9/")  # nothing is downloaded
  placed = cache_root / "downloads" / "openai" / "ViT-B-32.pt"
  placed.parent.mkdir(parents=True)
  placed.write_bytes(b"truncated")
  with pytest.raises(zoo.ZooError, match=rf"{placed} has SHA-256 {sha256(b'truncated')}, not the published"):
    zoo.fetch("openai:ViT-B/32", progress=False)
  assert placed.read_bytes() == b"truncated"  # the user's file: reported, not deleted


def test_ctrl_c_in_the_middle_of_a_download_leaves_nothing(tmp_path):
  """`python -m xclip_jax.zoo download` interrupted by SIGINT while the bytes arrive."""
  data = os.urandom(4 << 20)
  release = threading.Event()
  root = tmp_path / "cache"
  with LoopbackServer({"k400_16_8.pth": serve_cut(data, (1 << 20) + 4096, release)}, max_requests=1) as server:
    env = {**os.environ, cache.CACHE_VARIABLE: str(root), registry.RELEASE_URL_VARIABLE: server.url}
    process = subprocess.Popen([sys.executable, "-m", "xclip_jax.zoo", "download", "k400_16_8"], cwd=REPO_ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
      folder = root / "downloads" / "release"
      deadline = time.monotonic() + 60
      while time.monotonic() < deadline and not any(p.stat().st_size >= 1 << 20 for p in folder.glob(".*.part")):
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
      partial = list(folder.glob(".*.part"))
      assert partial, "the download never started"
      process.send_signal(signal.SIGINT)
      _, err = process.communicate(timeout=60)
    finally:
      release.set()
      if process.poll() is None:
        process.kill()
  assert process.returncode == 130, err
  assert "interrupted; nothing partial was kept" in err
  assert files_under(root) == []
