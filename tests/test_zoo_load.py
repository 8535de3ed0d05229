"""Models by name, end to end against a loopback server: a random OpenAI-architecture TorchScript archive
(its SHA-256 in its URL path, as OpenAI's) and a random official .pth, registered under test names.

A name must give exactly the model that converting the same file by hand gives; the second load must need
neither the server nor torch; training's init_from and the command line take names too.
"""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest

pytest.importorskip("torch")

import xclip_jax
from scripts import convert_checkpoint
from tests.references import random_videos
from tests.zoo_fixtures import (
    LoopbackServer,
    files_under,
    official_pth_bytes,
    openai_archive_bytes,
    run_python,
    serve_bytes,
    sha256,
)
from xclip_jax import pretrained, run_config, zoo
from xclip_jax.training import run_model
from xclip_jax.zoo import cache, cli, registry

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")

OPENAI_NAME, RELEASE_NAME = "openai:ViT-T/8", "tiny_test_4"
CLIP_FRAMES, RELEASE_FRAMES = 3, 4
TEXTS = ["square growing", "circle moving right", "juggling balls"]


def logits(model: xclip_jax.InferenceModel) -> np.ndarray:
  videos = random_videos(2, model.config.num_frames, model.config.image_size, seed=3)
  return np.asarray(model(videos, xclip_jax.tokenize(TEXTS)))


def register_code(archive_sha256: str) -> str:
  """Python that registers the two test names (run here and in the subprocesses)."""
  return (f"zoo.register_model(zoo.ModelInfo({OPENAI_NAME!r}, 'openai', '{archive_sha256}/ViT-T-8.pt', 'tiny', "
          f"None, 32, 'random weights (tests)'))\n"
          f"zoo.register_model(zoo.ModelInfo({RELEASE_NAME!r}, 'release', '{RELEASE_NAME}.pth', 'tiny', "
          f"{RELEASE_FRAMES}, 32, 'random weights (tests)'))\n")


@pytest.fixture(scope="module")
def released(tmp_path_factory):
  """The two files as a server would hold them, and their names registered for this module."""
  root = tmp_path_factory.mktemp("released")
  archive = openai_archive_bytes(root / "ViT-T-8.pt", seed=0)
  checkpoint = official_pth_bytes(root / f"{RELEASE_NAME}.pth", frames=RELEASE_FRAMES, seed=1)
  exec(register_code(sha256(archive)), {"zoo": zoo})
  yield {"root": root, "archive": archive, "checkpoint": checkpoint,
         "routes": {zoo.find_model(OPENAI_NAME).location: serve_bytes(archive),
                    zoo.find_model(RELEASE_NAME).location: serve_bytes(checkpoint)}}
  zoo.unregister_model(OPENAI_NAME)
  zoo.unregister_model(RELEASE_NAME)


@pytest.fixture(scope="module")
def first_loads(released, tmp_path_factory):
  """Both names loaded once from the server into a fresh cache; the server is stopped afterwards."""
  root = tmp_path_factory.mktemp("cache")
  with pytest.MonkeyPatch.context() as patch, LoopbackServer(released["routes"], max_requests=4) as server:
    for variable, value in ((cache.CACHE_VARIABLE, str(root)), (registry.OPENAI_URL_VARIABLE, server.url),
                            (registry.RELEASE_URL_VARIABLE, server.url)):
      patch.setenv(variable, value)
    models = {OPENAI_NAME: xclip_jax.load_model(OPENAI_NAME, frames=CLIP_FRAMES),
              RELEASE_NAME: xclip_jax.load_model(RELEASE_NAME)}
  return {"cache": root, "models": models, "requests": list(server.requests), "dead_url": server.url}


@pytest.fixture
def offline(first_loads, monkeypatch):
  """The first loads' cache, with the download locations pointing at the stopped server."""
  monkeypatch.setenv(cache.CACHE_VARIABLE, str(first_loads["cache"]))
  monkeypatch.setenv(registry.OPENAI_URL_VARIABLE, first_loads["dead_url"])
  monkeypatch.setenv(registry.RELEASE_URL_VARIABLE, first_loads["dead_url"])
  return first_loads["cache"]


@pytest.mark.parametrize("name", [OPENAI_NAME, RELEASE_NAME])
def test_a_name_loads_the_same_model_as_converting_the_file_by_hand(name, released, first_loads, tmp_path):
  if name == OPENAI_NAME:
    args = ["--source", "openai", "--input", str(released["root"] / "ViT-T-8.pt"), "--frames", str(CLIP_FRAMES)]
  else:
    args = ["--source", "xclip", "--input", str(released["root"] / f"{RELEASE_NAME}.pth")]
  assert convert_checkpoint.main([*args, "--output", str(tmp_path / "by_hand")]) == 0
  by_hand = xclip_jax.load_model(tmp_path / "by_hand")
  by_name = first_loads["models"][name]
  assert by_name.config == by_hand.config
  for ours, theirs in zip(jax.tree.leaves(by_name.state), jax.tree.leaves(by_hand.state), strict=True):
    np.testing.assert_array_equal(ours, theirs)
  expected = logits(by_hand)
  np.testing.assert_array_equal(logits(by_name), expected)
  assert np.abs(expected[0] - expected[1]).max() > 1e-4  # the logits depend on the video: a telling check


def test_each_file_is_downloaded_once_and_cached_with_its_checksum(released, first_loads):
  assert sorted(first_loads["requests"]) == sorted(f"/{zoo.find_model(n).location}" for n in (OPENAI_NAME,
                                                                                               RELEASE_NAME))
  root = first_loads["cache"]
  assert files_under(root / "downloads") == ["openai/ViT-T-8.pt", "openai/ViT-T-8.pt.sha256",
                                             f"release/{RELEASE_NAME}.pth", f"release/{RELEASE_NAME}.pth.sha256"]
  assert (root / "downloads" / "openai" / "ViT-T-8.pt").read_bytes() == released["archive"]
  converted = sorted((root / "models").iterdir())
  assert [p.name.rsplit("-", 1)[0] for p in converted] == ["openai_ViT-T-8-3f", RELEASE_NAME]
  for directory, data in zip(converted, (released["archive"], released["checkpoint"]), strict=True):
    assert files_under(directory) == ["config.json", "params.safetensors"]
    _, metadata = pretrained.read_config(directory)
    assert metadata["sha256"] == sha256(data) and metadata["url"].startswith(first_loads["dead_url"])


def test_the_second_load_needs_neither_network_nor_torch(released, first_loads):
  code = ("import json, sys, time\nimport numpy as np\nimport xclip_jax\nfrom xclip_jax import zoo\n"
          "from tests.references import random_videos\n" + register_code(sha256(released["archive"])) +
          f"out = {{}}\n"
          f"for name, frames in (({OPENAI_NAME!r}, {CLIP_FRAMES}), ({RELEASE_NAME!r}, None)):\n"
          f"  start = time.perf_counter()\n"
          f"  model = xclip_jax.load_model(name, frames=frames)\n"
          f"  out[name + ' seconds'] = time.perf_counter() - start\n"
          f"  videos = random_videos(2, model.config.num_frames, model.config.image_size, seed=3)\n"
          f"  out[name] = np.asarray(model(videos, xclip_jax.tokenize({TEXTS!r}))).tolist()\n"
          f"out['torch imported'] = 'torch' in sys.modules\n"
          f"print(json.dumps(out))\n")
  out = run_python(code, {cache.CACHE_VARIABLE: str(first_loads["cache"]),
                          registry.OPENAI_URL_VARIABLE: first_loads["dead_url"],
                          registry.RELEASE_URL_VARIABLE: first_loads["dead_url"]})
  assert out["torch imported"] is False
  for name in (OPENAI_NAME, RELEASE_NAME):
    print(f"second load of {name} (new process, no torch, server stopped): {out[name + ' seconds']:.2f} s")
    np.testing.assert_allclose(out[name], logits(first_loads["models"][name]), rtol=0, atol=1e-6)


def test_clip_becomes_an_xclip_of_the_requested_frames_from_the_same_download(first_loads, offline, tmp_path,
                                                                               monkeypatch):
  monkeypatch.setenv(cache.CACHE_VARIABLE, str(tmp_path / "cache"))
  shutil.copytree(offline, tmp_path / "cache")
  model = xclip_jax.load_model(OPENAI_NAME, frames=5)  # converted again from the downloaded archive
  assert model.config.num_frames == 5
  assert len(list((tmp_path / "cache" / "models").iterdir())) == 3
  three = first_loads["models"][OPENAI_NAME]
  np.testing.assert_array_equal(model.encode_text(xclip_jax.tokenize(TEXTS)), three.encode_text(
      xclip_jax.tokenize(TEXTS)))  # the same CLIP text tower


def test_a_file_put_in_the_cache_by_hand_is_used_without_network(released, first_loads, tmp_path, monkeypatch):
  monkeypatch.setenv(cache.CACHE_VARIABLE, str(tmp_path / "cache"))
  monkeypatch.setenv(registry.RELEASE_URL_VARIABLE, first_loads["dead_url"])
  placed = tmp_path / "cache" / "downloads" / "release" / f"{RELEASE_NAME}.pth"
  placed.parent.mkdir(parents=True)
  placed.write_bytes(released["checkpoint"])
  model = xclip_jax.load_model(RELEASE_NAME)
  np.testing.assert_array_equal(logits(model), logits(first_loads["models"][RELEASE_NAME]))


def test_training_init_from_takes_what_load_model_takes(offline, released, tmp_path):
  """A name, a converted directory or an official .pth file: the architecture is the source's, the data block
  follows it, and an override the source contradicts is one line naming the field."""
  config = run_config.base_config()
  config.model.variant, config.model.frames, config.data.num_frames = "tiny", CLIP_FRAMES, CLIP_FRAMES
  config.init_from.path = OPENAI_NAME  # CLIP has no frame count: it gets config.model.frames
  chosen = run_model.initial_model(config)
  expected_config, expected = pretrained.load_pretrained(zoo.fetch(OPENAI_NAME, frames=CLIP_FRAMES))
  assert chosen.model_config.num_frames == CLIP_FRAMES and sorted(chosen.params) == sorted(expected)
  for path, value in expected.items():
    np.testing.assert_array_equal(chosen.params[path], value)
  pth = tmp_path / f"{RELEASE_NAME}.pth"
  pth.write_bytes(released["checkpoint"])
  by_name = xclip_jax.load_model(RELEASE_NAME)
  for source in (RELEASE_NAME, str(pth)):  # an X-CLIP keeps its own frames; data.num_frames follows
    config.init_from.path = source
    chosen = run_model.initial_model(config)
    assert chosen.model_config.num_frames == RELEASE_FRAMES == chosen.config.data.num_frames
    assert chosen.config.model.frames == RELEASE_FRAMES and chosen.config.data.input_size == 32
    assert chosen.model_config.replace(dtype="float32") == by_name.config.replace(dtype="float32")
    for path, value in pretrained.load_pretrained(zoo.fetch(RELEASE_NAME))[1].items():
      np.testing.assert_array_equal(chosen.params[path], value)
  config.model.overrides.vision_layers = 7
  with pytest.raises(ValueError, match=f"config.model.overrides.vision_layers=7 but init_from {pth} has "
                                       f"vision_layers=2"):
    run_model.initial_model(config)


def test_cli_download_prints_where_the_model_is(offline, capsys):
  assert cli.main(["download", RELEASE_NAME, "--quiet"]) == 0
  out = capsys.readouterr().out
  path = zoo.fetch(RELEASE_NAME, progress=False)
  assert f"{RELEASE_NAME}: {path}" in out and f"frames {RELEASE_FRAMES}" in out
  assert cli.main(["download", "tiny_test_04"]) == 1
  assert f"Close matches: {RELEASE_NAME}" in capsys.readouterr().err
