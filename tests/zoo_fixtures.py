"""Real parts for the model-zoo tests: a bounded loopback HTTP server, tiny checkpoints in the released
formats, and a HuggingFace hub cache in huggingface_hub's own layout.

Nothing here reaches the internet. The checkpoint builders that write PyTorch files import torch lazily.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
Route = Callable[[http.server.BaseHTTPRequestHandler], None]


def serve_bytes(data: bytes) -> Route:
  def route(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
  return route


def serve_cut(data: bytes, sent: int, release: threading.Event | None = None, wait_seconds: float = 30.0) -> Route:
  """Announces len(data) bytes, sends only the first `sent`, then (after `release` if given) closes."""
  def route(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data[:sent])
    handler.wfile.flush()
    if release is not None:
      release.wait(wait_seconds)
    handler.close_connection = True
  return route


class LoopbackServer:
  """An HTTP/1.0 server on 127.0.0.1 in a thread, serving `routes` (URL path -> Route).

  Bounded: it answers at most `max_requests` requests and stops by itself after `lifetime` seconds, so a
  test that fails half-way cannot leave it running. Unknown paths get 404. `requests` lists the paths asked.
  """

  def __init__(self, routes: Mapping[str, Route], *, max_requests: int = 20, lifetime: float = 120.0):
    self.routes = dict(routes)
    self.requests: list[str] = []
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_GET(self) -> None:
        server.requests.append(self.path)
        route = server.routes.get(self.path.lstrip("/"))
        if route is None:
          self.send_error(404)
        else:
          route(self)

      def log_message(self, *args) -> None:
        del args

    self._httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    self._httpd.timeout = 0.1
    self._max_requests = max_requests
    self._deadline = time.monotonic() + lifetime
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._serve, daemon=True)

  @property
  def url(self) -> str:
    return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

  def _serve(self) -> None:
    try:
      while (not self._stop.is_set() and len(self.requests) < self._max_requests
             and time.monotonic() < self._deadline):
        self._httpd.handle_request()
    finally:
      self._httpd.server_close()

  def __enter__(self) -> LoopbackServer:
    self._thread.start()
    return self

  def stop(self) -> None:
    self._stop.set()
    self._thread.join(timeout=10)

  def __exit__(self, *exc) -> None:
    self.stop()


def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def files_under(root: pathlib.Path) -> list[str]:
  """Every file (hidden ones included) under root, relative; [] if root does not exist."""
  return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- tiny checkpoints in the released formats --------------------------------------------------------------
# Widths of 64 make every width // 64 head count 1, as the official code derives them.
TINY_CLIP = dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                 context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=2)


def openai_archive_bytes(path: pathlib.Path, seed: int) -> bytes:
  """A random OpenAI-architecture CLIP as OpenAI releases it: a TorchScript archive with fp16 weights."""
  import torch

  from tests.references import openai_clip_file, randomize_

  clip_model = openai_clip_file("model")
  torch.manual_seed(seed)
  model = clip_model.CLIP(**TINY_CLIP).eval()
  randomize_(model, seed=seed)
  clip_model.convert_weights(model)
  example = (torch.zeros(1, 3, 32, 32, dtype=torch.float16), torch.zeros(1, 77, dtype=torch.long))
  torch.jit.trace(model, example, check_trace=False).save(str(path))
  return path.read_bytes()


def tiny_xclip_config(frames: int):
  from xclip_jax.models.config import variant_config

  return variant_config("tiny", frames=frames, vision_heads=1, text_heads=1, mit_heads=1, prompt_heads=1)


def random_params(config, seed: int) -> dict:
  from xclip_jax.models.params import flat_params
  from xclip_jax.models.xclip import create_model

  rng = np.random.default_rng(seed)
  params = flat_params(create_model(config, seed=seed))
  return {path: (value + 0.02 * rng.standard_normal(value.shape)).astype(np.float32) for path, value in params.items()}


def official_pth_bytes(path: pathlib.Path, frames: int, seed: int) -> bytes:
  """A random X-CLIP in the official release layout ({"model": state_dict} .pth)."""
  from xclip_jax.conversion import export_checkpoint

  config = tiny_xclip_config(frames)
  export_checkpoint("official", config, random_params(config, seed), path)
  return path.read_bytes()


def hf_model_files(directory: pathlib.Path, frames: int, seed: int, heads: int = 2) -> dict[str, bytes]:
  """config.json + model.safetensors of a random XCLIPModel (as save_pretrained writes them; no torch)."""
  from xclip_jax.conversion import export_checkpoint
  from xclip_jax.models.config import variant_config

  config = variant_config("tiny", frames=frames, mit_heads=heads, prompt_heads=heads)
  export_checkpoint("hf", config, random_params(config, seed), directory)
  return {name: (directory / name).read_bytes() for name in ("config.json", "model.safetensors")}


# --- a HuggingFace hub cache in huggingface_hub's layout ----------------------------------------------------
def add_hf_repo(hub_cache: pathlib.Path, repo_id: str, commits: Mapping[str, Mapping[str, bytes]],
                refs: Mapping[str, str], repo_type: str = "model") -> pathlib.Path:
  """Writes repo_id's commits into an HF hub cache: blobs/<hash>, snapshots/<commit>/<file> -> blob, refs/<ref>.

  This is the layout huggingface_hub itself writes (its `scan_cache_dir` reads it back in the tests).
  """
  folder = hub_cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
  for commit, files in commits.items():
    for name, data in files.items():
      blob = folder / "blobs" / sha256(data)
      blob.parent.mkdir(parents=True, exist_ok=True)
      blob.write_bytes(data)
      link = folder / "snapshots" / commit / name
      link.parent.mkdir(parents=True, exist_ok=True)
      link.symlink_to(os.path.relpath(blob, link.parent))
  for ref, commit in refs.items():
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / ref).write_text(commit)
  return folder


def run_python(code: str, env: Mapping[str, str], timeout: float = 300) -> dict:
  """Runs code in a fresh interpreter (repo root as cwd) and returns the JSON it prints on its last line."""
  full_env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3", **env}
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
  assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
  return json.loads(result.stdout.strip().splitlines()[-1])
