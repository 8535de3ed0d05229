"""HF hub ids by name, offline: a hub cache in huggingface_hub's own layout under HF_HOME, HF_HUB_OFFLINE=1.

The loads run in fresh interpreters because huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when it is
imported. Safetensors-only repos must load without torch, revisions (tag, commit) must select their commit,
and the converted model must equal converting the same snapshot by hand.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import huggingface_hub
import numpy as np
import pytest

import xclip_jax
from tests.references import random_videos
from tests.zoo_fixtures import REPO_ROOT, add_hf_repo, hf_model_files, run_python
from xclip_jax.conversion import import_checkpoint
from xclip_jax.data import synthetic
from xclip_jax.models.params import model_from_params
from xclip_jax.zoo import cache

REPO = "someone/xclip-tiny-finetuned"  # not in the registry: any XCLIP repo loads
MAIN, TAGGED = "a" * 40, "b" * 40  # commits: main, and the one tag v1 points to
TEXTS = ["playing sports", "eating spaghetti", "go shopping"]
FRAMES = 4


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
  root = tmp_path_factory.mktemp("hub")
  main = hf_model_files(root / "main", FRAMES, seed=5)
  main["preprocessor_config.json"] = json.dumps({"crop_size": {"height": 28, "width": 28}}).encode()
  # Both weight files, as many hub repos have: the safetensors must be preferred (this .bin is not even valid).
  main["pytorch_model.bin"] = b"a pickle that must not be read: safetensors comes first"
  tagged = hf_model_files(root / "tagged", FRAMES, seed=6)
  hub_cache = root / "hf" / "hub"
  add_hf_repo(hub_cache, REPO, {MAIN: main, TAGGED: tagged}, {"main": MAIN, "v1": TAGGED})
  add_hf_repo(hub_cache, "someone/plain-clip", {"c" * 40: {"config.json": b'{"model_type": "clip"}'}},
              {"main": "c" * 40})
  video = root / "eating_spaghetti.mp4"
  synthetic.write_mp4(str(video), np.full((6, 32, 48, 3), 120, np.uint8), fps=5)
  add_hf_repo(hub_cache, "nielsr/video-demo", {"d" * 40: {"eating_spaghetti.mp4": video.read_bytes()}},
              {"main": "d" * 40}, repo_type="dataset")
  env = {"HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", cache.CACHE_VARIABLE: str(root / "cache")}
  return {"root": root, "hub_cache": hub_cache, "video": video, "env": env}


def by_hand_logits(snapshot: pathlib.Path) -> np.ndarray:
  config, params, _ = import_checkpoint("hf", snapshot)
  model = xclip_jax.InferenceModel(model_from_params(config, params))
  return np.asarray(model(random_videos(2, FRAMES, config.image_size, seed=3), xclip_jax.tokenize(TEXTS)))


def test_the_cache_is_in_huggingface_hubs_own_layout(hub):
  report = huggingface_hub.scan_cache_dir(hub["hub_cache"])
  assert not report.warnings
  repos = {repo.repo_id: repo for repo in report.repos}
  assert sorted(repos) == ["nielsr/video-demo", "someone/plain-clip", REPO]
  assert {r.commit_hash: sorted(r.refs) for r in repos[REPO].revisions} == {MAIN: ["main"], TAGGED: ["v1"]}


def test_hub_ids_load_offline_by_revision_without_torch(hub):
  code = f"""
import json, sys, time
import numpy as np
import xclip_jax
from xclip_jax import pretrained, zoo
from tests.references import random_videos
out = {{}}
def logits(model):
  return np.asarray(model(random_videos(2, {FRAMES}, model.config.image_size, seed=3),
                          xclip_jax.tokenize({TEXTS!r}))).tolist()
out["main"] = logits(xclip_jax.load_model({REPO!r}))
start = time.perf_counter()
xclip_jax.load_model({REPO!r})
out["second load seconds"] = time.perf_counter() - start
out["v1"] = logits(xclip_jax.load_model({REPO!r}, revision="v1"))
out["same by tag and commit"] = zoo.fetch({REPO!r}, revision="v1") == zoo.fetch({REPO!r}, revision={TAGGED!r})
out["metadata"] = pretrained.read_config(zoo.fetch({REPO!r}))[1]
for name, key in (("someone/not-downloaded", "offline"), ("someone/plain-clip", "not xclip")):
  try:
    xclip_jax.load_model(name)
  except zoo.ZooError as error:
    out[key] = str(error)
out["video"] = str(zoo.sample_video())
out["torch imported"] = "torch" in sys.modules
print(json.dumps(out))
"""
  out = run_python(code, hub["env"])
  snapshots = hub["hub_cache"] / f"models--{REPO.replace('/', '--')}" / "snapshots"
  np.testing.assert_allclose(out["main"], by_hand_logits(snapshots / MAIN), rtol=0, atol=1e-6)
  np.testing.assert_allclose(out["v1"], by_hand_logits(snapshots / TAGGED), rtol=0, atol=1e-6)
  assert out["same by tag and commit"] and np.abs(np.subtract(out["main"], out["v1"])).max() > 1e-3
  print(f"second load of an HF hub id (offline, no torch): {out['second load seconds']:.2f} s")
  assert out["torch imported"] is False  # safetensors read without torch; the invalid .bin never touched
  metadata = out["metadata"]
  assert (metadata["hf_repo"], metadata["hf_commit"], metadata["preprocessor_crop_size"]) == (REPO, MAIN, 28)
  assert "someone/not-downloaded" in out["offline"] and str(hub["hub_cache"]) in out["offline"]
  assert "HF_HUB_OFFLINE" in out["offline"]
  assert "holds a 'clip' model, not an XCLIP model" in out["not xclip"]
  assert pathlib.Path(out["video"]).read_bytes() == hub["video"].read_bytes()


def test_cli_download_of_a_hub_id_at_a_revision(hub):
  result = subprocess.run([sys.executable, "-m", "xclip_jax.zoo", "download", REPO, "--revision", "v1"],
                          cwd=REPO_ROOT, env={**__import__("os").environ, "JAX_PLATFORMS": "cpu", **hub["env"]},
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  path = result.stdout.splitlines()[0].split(": ", 1)[1]
  assert pathlib.Path(path).parent == hub["root"] / "cache" / "models"
  assert f"HF commit {TAGGED}" in result.stdout and f"frames {FRAMES}" in result.stdout
