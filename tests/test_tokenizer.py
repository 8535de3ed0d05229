"""xclip_jax.tokenizer against two real CLIP tokenizers: OpenAI's own and transformers' CLIPTokenizer.

Expected ids are never hard-coded: the pretrained text encoder only understands the ids OpenAI's tokenizer
produces, so that is the ground truth, and transformers' independent implementation is a second witness.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import pathlib
import random
import types

import numpy as np
import pytest

from xclip_jax import tokenizer as tokenizer_lib

SOT, EOT = 49406, 49407

# Inputs on which both references agree.
AGREED_TEXTS = [
    "a person playing guitar",
    "Playing Guitar",
    "ApplyEyeMakeup",  # UCF-101 CamelCase class name: lowercased, then one letter run.
    "PLAYING GUITAR loudly",
    "don't stop!!! (really?)",
    "I'm sure they'll say we've done it, isn't it? You'd think so... 'quoted' -- ok",
    "3 people, 12 dogs and 2024 cats: 1.5 kg @ 10:30pm #42 $9.99 50%",
    "café naïve résumé Ångström crème brûlée Straße Ελληνικά русский",
    "e\u0301 vs \u00e9",  # Combining acute accent: NFC-composed by both.
    "日本語のテキスト 中文分词 한국어",
    "😀 🎸 👍🏽 family 👨‍👩‍👧 flags 🇯🇵",
    "  runs\t\tof   whitespace\nnew\r\nlines \u00a0nbsp\u3000ideographic  ",
    "",
    "   ",
]

# Inputs where transformers 5.23's CLIPTokenizer disagrees with OpenAI for reasons of its own: v5 has no slow
# (Python) CLIP tokenizer any more, and the tokenizers-backed one normalises with NFC + whitespace collapse +
# lowercase only, i.e. without OpenAI's ftfy.fix_text and double html.unescape (even the old slow one skipped the
# unescape). These are checked against OpenAI only.
OPENAI_ONLY_TEXTS = [
    "&amp;lt;b&amp;gt; Tom &amp; Jerry &quot;hi&quot; &#39;x&#39;",  # HTML entities, double-escaped.
    "schÃ¶n, The Mona Lisa doesnâ€™t have eyebrows.",  # Mojibake that ftfy repairs.
    "doesn’t “curly” quotes",  # ftfy straightens curly quotes.
    "１２３ ＡＢＣ！",  # ftfy folds full-width characters.
    "ﬁne ﬂowers",  # ftfy expands Latin ligatures.
    # Literal special tokens: OpenAI matches them after lowercasing, HF only case-sensitively, before normalising.
    "before <|endoftext|> after <|STARTOFTEXT|>",
]

# A dozen real Kinetics-400 class names (with their parentheses and apostrophes).
KINETICS_LABELS = [
    "abseiling", "air drumming", "passing American football (in game)", "massaging person's head",
    "tying knot (not on a tie)", "shooting goal (soccer)", "tai chi", "playing didgeridoo",
    "breading or breadcrumbing", "skiing (not slalom or crosscountry)", "pumping fist", "zumba",
]

LONG_TEXT = "a person " * 30 + "is riding a mechanical bull while juggling flaming torches " * 4


def _load_openai_module() -> types.ModuleType:
  """Loads openai-clip's simple_tokenizer.py by path: `import clip` would pull in torchvision, not installed."""
  spec = importlib.util.find_spec("clip")
  if spec is None or not spec.submodule_search_locations:
    pytest.skip("openai-clip (requirements-dev.txt) is not installed")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "simple_tokenizer.py"
  module_spec = importlib.util.spec_from_file_location("_openai_clip_simple_tokenizer", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def openai_module() -> types.ModuleType:
  return _load_openai_module()


@pytest.fixture(scope="module")
def openai_tokenizer(openai_module):
  return openai_module.SimpleTokenizer()


@pytest.fixture(scope="module")
def ours() -> tokenizer_lib.Tokenizer:
  return tokenizer_lib.default_tokenizer()


def openai_tokenize(ref, texts, context_length: int = 77, truncate: bool = False) -> np.ndarray:
  """`clip.tokenize` (clip/clip.py) with numpy instead of torch; raises RuntimeError like it does."""
  if isinstance(texts, str):
    texts = [texts]
  sot, eot = ref.encoder["<|startoftext|>"], ref.encoder["<|endoftext|>"]
  result = np.zeros((len(texts), context_length), np.int32)
  for i, text in enumerate(texts):
    tokens = [sot, *ref.encode(text), eot]
    if len(tokens) > context_length:
      if not truncate:
        raise RuntimeError(f"Input {text} is too long for context length {context_length}")
      tokens = tokens[:context_length]
      tokens[-1] = eot
    result[i, :len(tokens)] = tokens
  return result


@pytest.fixture(scope="module")
def hf_tokenizer(openai_module, tmp_path_factory):
  """transformers' CLIPTokenizer loaded from vocab.json + merges.txt derived from OpenAI's merge file.

  merges.txt: the version header plus the BPE lines [1 : 49152-256-2+1] of the gz file (48894 merges, in rank
  order). vocab.json (symbol -> id, ids in this order): the 256 byte stand-in characters of bytes_to_unicode(),
  the same 256 with "</w>" appended, each merge's two symbols joined, then <|startoftext|> and <|endoftext|>.
  """
  transformers = pytest.importorskip("transformers")
  lines = gzip.decompress(pathlib.Path(openai_module.default_bpe()).read_bytes()).decode("utf-8").split("\n")
  merges = lines[1:49152 - 256 - 2 + 1]
  byte_symbols = list(openai_module.bytes_to_unicode().values())
  vocab = [*byte_symbols, *(s + "</w>" for s in byte_symbols), *("".join(m.split()) for m in merges),
           "<|startoftext|>", "<|endoftext|>"]
  directory = tmp_path_factory.mktemp("hf_clip_tokenizer")
  (directory / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(vocab)}), encoding="utf-8")
  (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
  tokenizer = transformers.CLIPTokenizer.from_pretrained(str(directory))
  assert len(tokenizer) == 49408
  return tokenizer


def _up_to_first_eot(row) -> list[int]:
  row = [int(i) for i in row]
  return row[:row.index(EOT) + 1]


def hf_rows(hf, texts: list[str], truncate: bool = False) -> list[list[int]]:
  """HF ids up to and including the first EOT: HF pads with EOT where clip.tokenize pads with 0."""
  ids = hf(texts, padding="max_length", max_length=77, truncation=truncate)["input_ids"]
  return [_up_to_first_eot(row) for row in ids]


def assert_matches_hf(ours_rows: np.ndarray, hf, texts: list[str], truncate: bool = False) -> None:
  for row, expected in zip(ours_rows, hf_rows(hf, texts, truncate), strict=True):
    assert _up_to_first_eot(row) == expected
    assert not row[len(expected):].any()  # Zero padding after EOT.


def test_packaged_vocabulary_is_openais(openai_module):
  packaged = (pathlib.Path(tokenizer_lib.__file__).parent / "assets" / "bpe_simple_vocab_16e6.txt.gz").read_bytes()
  assert packaged == pathlib.Path(openai_module.default_bpe()).read_bytes()


def test_vocabulary_layout(ours, openai_tokenizer):
  assert (ours.vocab_size, ours.sot_id, ours.eot_id) == (49408, SOT, EOT)
  assert len(openai_tokenizer.encoder) == ours.vocab_size
  # Every id, decoded alone, gives the reference's text for it (checks all 49408 symbols and their order).
  sample = list(range(0, 49408, 7)) + [255, 256, 511, 512, SOT, EOT]
  for i in sample:
    assert ours.decode([i]) == openai_tokenizer.decode([i]).strip(), i


@pytest.mark.parametrize("text", AGREED_TEXTS)
def test_matches_both_references(text, ours, openai_tokenizer, hf_tokenizer):
  got = tokenizer_lib.tokenize(text)
  assert got.shape == (1, 77) and got.dtype == np.int32
  np.testing.assert_array_equal(got, openai_tokenize(openai_tokenizer, text))
  assert_matches_hf(got, hf_tokenizer, [text])
  assert ours.encode(text) == openai_tokenizer.encode(text)


@pytest.mark.parametrize("text", OPENAI_ONLY_TEXTS)
def test_matches_openai_where_hf_normalises_differently(text, ours, openai_tokenizer):
  np.testing.assert_array_equal(tokenizer_lib.tokenize(text), openai_tokenize(openai_tokenizer, text))
  assert ours.encode(text) == openai_tokenizer.encode(text)


def test_cleaning_effects(ours):
  # ftfy + double unescape + whitespace + lowercase make these pairs tokenize identically.
  assert ours.encode("&amp;lt;b&amp;gt;") == ours.encode("<b>")
  assert ours.encode("schÃ¶n") == ours.encode("schön")
  assert ours.encode("Playing   Guitar\n") == ours.encode("playing guitar")
  assert ours.encode("ApplyEyeMakeup") == ours.encode("applyeyemakeup")
  assert ours.encode("<|endoftext|>") == [EOT]


def test_kinetics_label_batch(openai_tokenizer, hf_tokenizer):
  prompts = [f"a video of a person {label}." for label in KINETICS_LABELS]
  for texts in (KINETICS_LABELS, prompts):
    got = tokenizer_lib.tokenize(texts)
    assert got.shape == (len(texts), 77) and got.dtype == np.int32
    np.testing.assert_array_equal(got, openai_tokenize(openai_tokenizer, texts))
    assert_matches_hf(got, hf_tokenizer, texts)


def test_random_strings_match_openai(ours, openai_tokenizer):
  pool = ("abcxyzABCXYZ" + "0123456789" + " \t\n" + "'!?.,;:-_()[]{}<>&#@/\\\"" + "éüßñÅçøœ" + "日本語中文한국"
          + "😀🎸👍🏽" + "\u0301\u200d\u00a0")
  rng = random.Random(0)
  for _ in range(300):
    text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 24)))
    assert ours.encode(text) == openai_tokenizer.encode(text), repr(text)


def test_fits_exactly_and_one_over(openai_tokenizer):
  fits, over = "a " * 75, "a " * 76  # "a" is one token: 75 + SOT + EOT == 77.
  np.testing.assert_array_equal(tokenizer_lib.tokenize(fits), openai_tokenize(openai_tokenizer, fits))
  assert tokenizer_lib.tokenize(fits)[0, -1] == EOT
  with pytest.raises(RuntimeError):
    openai_tokenize(openai_tokenizer, over)
  with pytest.raises(ValueError, match="78 tokens"):
    tokenizer_lib.tokenize(over)


def test_too_long_raises_with_details(openai_tokenizer):
  n_tokens = len(openai_tokenizer.encode(LONG_TEXT)) + 2
  assert n_tokens > 77
  with pytest.raises(ValueError) as info:
    tokenizer_lib.tokenize(["short", LONG_TEXT])
  message = str(info.value)
  assert "Text 1" in message and LONG_TEXT[:40] in message and "..." in message
  assert f"{n_tokens} tokens" in message and "context_length=77" in message and "truncate=True" in message
  assert len(message) < 400  # The text is shortened, not pasted whole.
  with pytest.raises(ValueError, match="'short text'"):
    tokenizer_lib.tokenize("short text", context_length=3)


def test_truncate_matches_references(openai_tokenizer, hf_tokenizer):
  texts = [LONG_TEXT, "short one", LONG_TEXT.upper()]
  got = tokenizer_lib.tokenize(texts, truncate=True)
  assert got.shape == (3, 77) and got.dtype == np.int32
  assert (got[[0, 2], -1] == EOT).all() and (got[[0, 2]] != 0).all()
  np.testing.assert_array_equal(got, openai_tokenize(openai_tokenizer, texts, truncate=True))
  assert_matches_hf(got, hf_tokenizer, texts, truncate=True)
  # Other context lengths, as clip.tokenize allows.
  for length in (2, 5, 16):
    np.testing.assert_array_equal(tokenizer_lib.tokenize(texts, context_length=length, truncate=True),
                                  openai_tokenize(openai_tokenizer, texts, context_length=length, truncate=True))


def test_batch_shapes():
  texts = ["Playing Guitar", "", "ApplyEyeMakeup", "日本語", "😀"]
  out = tokenizer_lib.tokenize(texts)
  assert out.shape == (5, 77) and out.dtype == np.int32
  assert (out[:, 0] == SOT).all() and (out.argmax(-1) > 0).all()
  np.testing.assert_array_equal(tokenizer_lib.tokenize(tuple(texts)), out)
  np.testing.assert_array_equal(tokenizer_lib.tokenize(np.array(texts)), out)
  assert tokenizer_lib.tokenize([]).shape == (0, 77)


def test_rejects_non_strings(ours):
  with pytest.raises(TypeError, match=r"texts\[1\] is a int"):
    tokenizer_lib.tokenize(["ok", 3])
  with pytest.raises(TypeError, match="bytes"):
    tokenizer_lib.tokenize(b"raw bytes")
  with pytest.raises(TypeError):
    tokenizer_lib.tokenize(None)
  with pytest.raises(TypeError, match="NoneType"):
    tokenizer_lib.tokenize(["ok", None])
  with pytest.raises(TypeError):
    ours.encode(42)
  with pytest.raises(ValueError, match="context_length"):
    tokenizer_lib.tokenize("x", context_length=1)


@pytest.mark.parametrize("text", ["a person playing guitar", "tai chi", "café au lait", "日本語のテキスト", "", "🎸"])
def test_decode_round_trip(text, ours, openai_tokenizer):
  ids = ours.encode(text)
  assert ours.decode(ids) == text
  assert ours.decode(np.asarray(ids, np.int32)) == text
  assert ours.decode(ids) == openai_tokenizer.decode(ids).strip()


def test_decode_matches_reference_on_general_text(ours, openai_tokenizer):
  for text in [*AGREED_TEXTS, *OPENAI_ONLY_TEXTS, *KINETICS_LABELS]:
    ids = ours.encode(text)
    assert ours.decode(ids) == openai_tokenizer.decode(ids).strip()
  with pytest.raises(ValueError, match="outside the vocabulary"):
    ours.decode([49408])


def test_explicit_vocabulary_path(openai_module, ours):
  other = tokenizer_lib.Tokenizer(openai_module.default_bpe())
  for text in KINETICS_LABELS:
    assert other.encode(text) == ours.encode(text)
  assert tokenizer_lib.default_tokenizer() is tokenizer_lib.default_tokenizer()
