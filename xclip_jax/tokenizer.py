"""OpenAI CLIP's byte-level BPE tokenizer, as X-CLIP uses it for class names and prompts.

The text encoder was trained on exactly these ids, so everything here must reproduce OpenAI's
`clip/simple_tokenizer.py` + `clip.tokenize` bit for bit: the same cleaning (ftfy, double HTML unescape,
whitespace collapse, lowercase), the same pre-tokenisation regex, the same byte -> unicode table (which fixes the
order of the first 512 ids) and the same merge list (`assets/bpe_simple_vocab_16e6.txt.gz`, see `assets/NOTICE`).
"""

from __future__ import annotations

import functools
import gzip
import html
import itertools
import os
from collections.abc import Iterable, Sequence
from importlib import resources

import ftfy
import numpy as np
import regex

CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
SOT_ID = VOCAB_SIZE - 2  # 49406
EOT_ID = VOCAB_SIZE - 1  # 49407

# CLIP's vocabulary: 256 byte symbols, the same with the end-of-word marker, one id per merge, two special tokens.
_NUM_MERGES = VOCAB_SIZE - 2 * 256 - 2  # 48894 == len(lines[1 : 49152 - 256 - 2 + 1])
_END_OF_WORD = "</w>"
_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# Pre-tokenisation: special tokens, English clitics, letter runs, single digits, runs of anything else but spaces.
_PRETOKENIZE = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", regex.IGNORECASE)
_WHITESPACE = regex.compile(r"\s+")  # `regex`'s \s (Unicode White_Space), as the reference uses, not `re`'s.
_MAX_CACHED_WORDS = 200_000  # Bounds memory in long-running jobs; real caption vocabularies stay far below.
_MAX_SHOWN_CHARS = 80  # How much of an over-long text goes into the error message.


def _byte_symbols() -> tuple[list[str], list[int]]:
  """Returns (stand-in characters, their bytes), both in CLIP's vocabulary order (ids 0..255).

  BPE works on strings, so every byte gets a visible, non-space character: printable Latin-1 bytes stand for
  themselves (listed first, in byte order), the remaining 68 bytes (controls, space, DEL, NBSP, soft hyphen...)
  are shifted to U+0100 onwards, in byte order, and listed after them.
  """
  printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  printable_set = set(printable)
  shifted = [b for b in range(256) if b not in printable_set]
  return [chr(b) for b in printable] + [chr(256 + k) for k in range(len(shifted))], printable + shifted


def _clean_text(text: str) -> str:
  """Normalises text the way CLIP's training captions were: repaired, unescaped, single-spaced, lowercase."""
  text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
  return _WHITESPACE.sub(" ", text).strip().lower()


def _read_merges(path: str | os.PathLike[str] | None) -> list[tuple[str, str]]:
  """Reads the first `_NUM_MERGES` merge rules (after the version header) from a gzip'ed or plain merge file."""
  if path is None:
    data = (resources.files("xclip_jax") / "assets" / _VOCAB_FILE).read_bytes()
  else:
    with open(path, "rb") as f:
      data = f.read()
  if data[:2] == b"\x1f\x8b":
    data = gzip.decompress(data)
  lines = data.decode("utf-8").split("\n")[1:_NUM_MERGES + 1]
  merges = [tuple(line.split()) for line in lines]
  if len(merges) != _NUM_MERGES or any(len(m) != 2 for m in merges):
    raise ValueError(f"{path or _VOCAB_FILE} is not a CLIP BPE merge file: expected a header line and "
                     f"{_NUM_MERGES} lines of two symbols each.")
  return merges


class Tokenizer:
  """CLIP's BPE tokenizer. Building it parses ~49k merges (a fraction of a second), so create it once and reuse it.

  Attributes:
    vocab_size: number of ids (49408).
    sot_id, eot_id: ids of the start- and end-of-text tokens (49406, 49407).
  """

  def __init__(self, bpe_path: str | os.PathLike[str] | None = None):
    """Loads the merge list: the copy shipped with the package unless `bpe_path` names another file."""
    byte_symbols, byte_order = _byte_symbols()
    # str.translate tables between Latin-1-decoded bytes and their stand-ins (and back).
    self._to_symbols = {b: s for b, s in zip(byte_order, byte_symbols, strict=True)}
    self._to_bytes = {ord(s): b for b, s in self._to_symbols.items()}
    merges = _read_merges(bpe_path)
    symbols = [*byte_symbols, *(s + _END_OF_WORD for s in byte_symbols), *(a + b for a, b in merges),
               SOT_TOKEN, EOT_TOKEN]
    self._id_to_symbol = symbols
    self._symbol_to_id = {s: i for i, s in enumerate(symbols)}
    self._merge_rank = {pair: rank for rank, pair in enumerate(merges)}
    self.vocab_size = len(symbols)
    self.sot_id = self._symbol_to_id[SOT_TOKEN]
    self.eot_id = self._symbol_to_id[EOT_TOKEN]
    # Pre-token -> ids. Captions reuse few words, so this removes almost all BPE work after warm-up.
    self._cache: dict[str, tuple[int, ...]] = {SOT_TOKEN: (self.sot_id,), EOT_TOKEN: (self.eot_id,)}

  def _merge(self, symbols: list[str]) -> list[str]:
    """Applies BPE: repeatedly fuses every occurrence of the adjacent pair with the lowest merge rank."""
    rank_of = self._merge_rank
    while len(symbols) > 1:
      best_rank, best_pair = None, None
      for pair in itertools.pairwise(symbols):
        rank = rank_of.get(pair)
        if rank is not None and (best_rank is None or rank < best_rank):
          best_rank, best_pair = rank, pair
      if best_pair is None:
        break
      first, second = best_pair
      fused: list[str] = []
      i = 0
      while i < len(symbols):
        if symbols[i] == first and i + 1 < len(symbols) and symbols[i + 1] == second:
          fused.append(first + second)
          i += 2
        else:
          fused.append(symbols[i])
          i += 1
      symbols = fused
    return symbols

  def _word_ids(self, word: str) -> tuple[int, ...]:
    """Ids of one pre-token, through the cache."""
    ids = self._cache.get(word)
    if ids is None:
      symbols = list(word.encode("utf-8").decode("latin-1").translate(self._to_symbols))
      symbols[-1] += _END_OF_WORD
      ids = tuple(self._symbol_to_id[s] for s in self._merge(symbols))
      if len(self._cache) >= _MAX_CACHED_WORDS:
        self._cache.clear()
        self._cache.update({SOT_TOKEN: (self.sot_id,), EOT_TOKEN: (self.eot_id,)})
      self._cache[word] = ids
    return ids

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without start/end-of-text (literal "<|endoftext|>" etc. map to the special ids)."""
    if not isinstance(text, str):
      raise TypeError(f"Tokenizer.encode expects a str, got {type(text).__name__}.")
    ids: list[int] = []
    for word in _PRETOKENIZE.findall(_clean_text(text)):
      ids.extend(self._word_ids(word))
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids` (any int iterable, e.g. a row of `tokenize` with its padding removed).

    Only approximately inverts `encode`: cleaning is lossy (case, spacing) and every word end becomes a space,
    so "don't" decodes as "don 't". Invalid UTF-8 from partial byte sequences is replaced with U+FFFD.
    """
    symbols = []
    for i in ids:
      i = int(i)
      if not 0 <= i < self.vocab_size:
        raise ValueError(f"Token id {i} is outside the vocabulary [0, {self.vocab_size}).")
      symbols.append(self._id_to_symbol[i])
    raw = "".join(symbols).translate(self._to_bytes).encode("latin-1")
    return raw.decode("utf-8", errors="replace").replace(_END_OF_WORD, " ").strip()

  def tokenize(self, texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH,
               truncate: bool = False) -> np.ndarray:
    """See the module-level `tokenize`."""
    if context_length < 2:
      raise ValueError(f"context_length must be at least 2 (start- and end-of-text), got {context_length}.")
    items = _as_text_list(texts)
    out = np.zeros((len(items), context_length), np.int32)
    for index, text in enumerate(items):
      ids = [self.sot_id, *self.encode(text), self.eot_id]
      if len(ids) > context_length:
        if not truncate:
          shown = text if len(text) <= _MAX_SHOWN_CHARS else text[:_MAX_SHOWN_CHARS - 3] + "..."
          raise ValueError(
              f"Text {index} {shown!r} is {len(ids)} tokens long (with start/end-of-text), more than "
              f"context_length={context_length}. Shorten it, or pass truncate=True to cut it to "
              f"{context_length} tokens (end-of-text kept last).")
        ids = [*ids[:context_length - 1], self.eot_id]
      out[index, :len(ids)] = ids
    return out


def _as_text_list(texts: str | Sequence[str]) -> list[str]:
  """One text or a collection of texts -> list, rejecting non-strings early with a message naming the item."""
  if isinstance(texts, str):
    return [texts]
  if isinstance(texts, bytes | bytearray) or not isinstance(texts, Iterable):
    raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}.")
  items = list(texts)
  for index, text in enumerate(items):
    if not isinstance(text, str):
      raise TypeError(f"texts[{index}] is a {type(text).__name__} ({text!r:.60}), expected str.")
  return items


@functools.cache
def default_tokenizer() -> Tokenizer:
  """The shared tokenizer over the packaged vocabulary, built on first use (not at import)."""
  return Tokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH, truncate: bool = False) -> np.ndarray:
  """Tokenizes texts into CLIP's fixed-length id rows, like `clip.tokenize`.

  Args:
    texts: one text or a sequence of texts.
    context_length: row length; 77 for every CLIP / X-CLIP text encoder.
    truncate: cut texts that do not fit (keeping end-of-text last) instead of raising.

  Returns:
    int32 array (len(texts), context_length): [SOT, ids..., EOT, 0, 0, ...]. The text encoder pools at
    argmax(ids), i.e. at EOT, the largest id.

  Raises:
    ValueError: a text does not fit in context_length and truncate is False.
    TypeError: texts, or one of its items, is not a str.
  """
  return default_tokenizer().tokenize(texts, context_length, truncate)
