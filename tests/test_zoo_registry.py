"""The registry of released models: names, facts, URLs, close-match errors, and `python -m xclip_jax.zoo list`."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import xclip_jax
from tests.zoo_fixtures import REPO_ROOT
from xclip_jax import zoo
from xclip_jax.zoo import cli, registry


def by_source(source: str) -> list[zoo.ModelInfo]:
  return [m for m in xclip_jax.available_models() if m.source == source]


def test_every_released_model_has_a_unique_name():
  models = xclip_jax.available_models()
  names = [m.name for m in models]
  assert len(names) == len(set(names))
  # zoo.md: 10 HF ids + 8 few-shot HF ids; 6 Kinetics + 8 few-shot release files + zero.pth; 4 CLIP archives.
  assert (len(by_source("hf")), len(by_source("release")), len(by_source("openai"))) == (18, 15, 4)
  for model in models:
    assert model.architecture in ("B/32", "B/16", "L/14")
    assert model.resolution in (224, 336)
    assert model.trained_on
    assert model.frames in ((None,) if model.source == "openai" else (8, 16, 32))
    assert bool(model.accuracy) == (model.source != "openai")  # CLIP has no published X-CLIP accuracy


def test_release_files_and_hub_ids_agree_where_they_are_the_same_model():
  """k400_16_8 and microsoft/xclip-base-patch16 are one model (HF converted the release files)."""
  same = {"k400_32_8": "base-patch32", "k400_32_16": "base-patch32-16-frames", "k400_16_8": "base-patch16",
          "k400_16_16": "base-patch16-16-frames", "k600_16_8": "base-patch16-kinetics-600",
          "k600_16_16": "base-patch16-kinetics-600-16-frames", "zero": "base-patch16-zero-shot",
          **{f"few_{d}_{k}": f"base-patch16-{d}-{k}-shot" for d in ("hmdb", "ucf") for k in (2, 4, 8, 16)}}
  assert sorted(same) == sorted(m.name for m in by_source("release"))
  for release, hub in same.items():
    a, b = zoo.find_model(release), zoo.find_model(f"microsoft/xclip-{hub}")
    assert (a.architecture, a.frames, a.resolution, a.trained_on, dict(a.accuracy)) == (
        b.architecture, b.frames, b.resolution, b.trained_on, dict(b.accuracy)), release


def test_the_16_frame_large_model_is_336_px_and_large_models_are_only_on_the_hub():
  assert zoo.find_model("microsoft/xclip-large-patch14-16-frames").resolution == 336
  assert zoo.find_model("openai:ViT-L/14@336px").resolution == 336
  assert not [m for m in by_source("release") if m.architecture == "L/14"]


def test_openai_checksums_come_from_their_urls(monkeypatch):
  monkeypatch.delenv(registry.OPENAI_URL_VARIABLE, raising=False)
  for model in by_source("openai"):
    parts = model.url.split("/")
    assert model.url.startswith("https://openaipublic.azureedge.net/clip/models/")
    assert model.sha256 == parts[-2] and re.fullmatch(r"[0-9a-f]{64}", model.sha256)
    assert parts[-1].startswith("ViT-") and parts[-1].endswith(".pt")


def test_download_locations_follow_the_base_url_variables(monkeypatch):
  monkeypatch.delenv(registry.RELEASE_URL_VARIABLE, raising=False)
  assert zoo.find_model("k400_16_8").url == (
      "https://github.com/nbl97/X-CLIP_Model_Zoo/releases/download/v1.0/k400_16_8.pth")
  monkeypatch.setenv(registry.RELEASE_URL_VARIABLE, "http://mirror.example/xclip")
  monkeypatch.setenv(registry.OPENAI_URL_VARIABLE, "http://mirror.example/clip/")
  assert zoo.find_model("k400_16_8").url == "http://mirror.example/xclip/k400_16_8.pth"
  assert zoo.find_model("openai:ViT-B/16").url.startswith("http://mirror.example/clip/5806e77c")


def test_names_beyond_the_registry():
  assert zoo.find_model("k400_16_8.pth") is zoo.find_model("k400_16_8")  # the release file's own name
  custom = zoo.find_model("someone/xclip-finetuned-on-my-data")  # any hub id: taken as an HF XCLIP repo
  assert (custom.source, custom.location, custom.frames) == ("hf", "someone/xclip-finetuned-on-my-data", None)


@pytest.mark.parametrize("name, expected", [("k400_16_08", "k400_16_8"), ("openai:ViT-B16", "openai:ViT-B/16"),
                                            ("xclip-base-patch32", "microsoft/xclip-base-patch32"),
                                            ("openai:vit-b/32", "openai:ViT-B/32")])
def test_an_unknown_name_lists_close_matches(name, expected):
  with pytest.raises(zoo.UnknownModelError) as caught:
    zoo.fetch(name)
  message = str(caught.value)
  assert expected in message.split("Close matches:")[1]
  assert "python -m xclip_jax.zoo list" in message
  assert isinstance(caught.value, FileNotFoundError)


def test_load_model_with_an_unknown_name_says_it_is_neither_a_path_nor_a_name(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"No file or directory 'zero_shot'.*Close matches: zero"):
    xclip_jax.load_model("zero_shot")
  with pytest.raises(FileNotFoundError, match="No model at"):  # a Path is always a path, never a name
    xclip_jax.load_model(tmp_path / "k400_16_8")
  with pytest.raises(ValueError, match="revision='v2' applies to HF hub repos"):
    zoo.fetch("k400_16_8", revision="v2")
  with pytest.raises(ValueError, match="k400_16_8 was trained with 8 frames"):
    zoo.fetch("k400_16_8", frames=16)


def test_register_model_adds_a_name_once():
  info = zoo.ModelInfo("test_registry_entry", "release", "test_registry_entry.pth", "B/16", 8, 224, "nothing")
  zoo.register_model(info)
  try:
    assert zoo.find_model("test_registry_entry") is info
    with pytest.raises(ValueError, match="already registered"):
      zoo.register_model(info)
  finally:
    zoo.unregister_model("test_registry_entry")
  with pytest.raises(zoo.UnknownModelError):
    zoo.find_model("test_registry_entry")
  with pytest.raises(ValueError, match="named openai:"):
    zoo.ModelInfo("ViT-X", "openai", "x/ViT-X.pt", "B/16", None, 224, "CLIP")


def test_cli_list_shows_every_name_with_its_facts(capsys):
  assert cli.main(["list"]) == 0
  out = capsys.readouterr().out
  lines = out.splitlines()
  assert lines[0].split()[:4] == ["name", "arch", "frames", "res"]
  for model in xclip_jax.available_models():
    row = next(line for line in lines if line.split() and line.split()[0] == model.name)
    assert model.architecture in row and model.accuracy_text() in row
  assert "K400 87.7" in next(line for line in lines if line.startswith("microsoft/xclip-large-patch14-16-frames "))
  assert zoo.cache_dir().as_posix() in out


def test_cli_list_json_and_the_module_entry_point():
  result = subprocess.run([sys.executable, "-m", "xclip_jax.zoo", "list", "--json"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  entries = json.loads(result.stdout)
  assert len(entries) == 37
  known = {m.name: m for m in xclip_jax.available_models()}
  for entry in entries:
    assert entry["frames"] == known[entry["name"]].frames and entry["accuracy"] == dict(known[entry["name"]].accuracy)
  assert entries[0]["url"].endswith("/microsoft/xclip-base-patch32")
