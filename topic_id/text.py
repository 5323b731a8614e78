"""Frozen BERT-style text encoder with an on-disk embedding cache (the paper's FinBERT branch).

The encoder follows original_recipes.md §2.6 (FinBERT = ``TurkuNLP/bert-base-finnish-uncased-v1``
on LP: a token is the sum of the last 4 hidden layers, an utterance the mean of its tokens) and fixes
its defects: the mean runs over real tokens only (B5), [CLS]/[SEP] are left out of it by default and
the attention mask is passed by keyword (B13), an empty transcript gives a zero vector instead of a
crash (B7), the model runs on the configured device, once per distinct text (B13), and accent
stripping is a setting instead of an accident of the tokenizer config (§2.6, B13).

The model comes from a local directory or the local Hugging Face cache; nothing is downloaded at
run time unless ``hub_download=True``. A missing model raises :class:`TextEncoderNotFound` with
the commands that provide it. :func:`build_standin` makes a small random BERT with a vocabulary
trained on given texts, saved in Hugging Face format, for tests and the built-in demo; it loads
through the same code path and is named a stand-in everywhere (:attr:`TextEncoder.name`).

Cache layout (``cache_dir``)::

    <cache_dir>/<pooling>-<key>/     one folder per setting; pooling is "mean" or "tokens"
        meta.json                    the fields hashed into <key> + the model name, for humans
        shard-<id>.npy               "mean": float32 [n_texts, dim]; "tokens": float16 [n_tokens, dim]
        shard-<id>.idx.json          {"keys": [sha1(text), ...], "offsets": [0, ...]}, written last

``<key>`` hashes the model fingerprint (config, tokenizer files and a sample of the weight bytes, so
a moved copy still hits and a changed model misses), the layers summed, exclude_special,
max_length, strip_accents, pooling and dtype. Shards are immutable, uniquely named and written
through a temporary file, the index after the data, so a crash leaves at most an invisible orphan,
and any number of processes may read (and even write) a folder at the same time. The intended use
under DDP: the main process calls :meth:`TextEncoder.precompute`; the others then only read.
"""

import argparse
import csv
import hashlib
import heapq
import json
import logging
import os
import shutil
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from topic_id.metrics import atomic_write

logger = logging.getLogger(__name__)

STANDIN_MARKER = "STANDIN.json"
STANDIN_DESCRIPTION = "stand-in BERT (random init, demo vocab)"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CACHE_FORMAT = 1
SHARD_BYTES = 128 * 2**20
"""A cache shard is written once this many bytes of new embeddings are pending."""
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")
_MODEL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)


class TextEncoderNotFound(FileNotFoundError):
    """The text encoder model is not available locally; the message says how to provide it."""


def _howto(source):
    return (
        f"To provide it: on a machine with internet access run\n"
        f"    hf download {source} --local-dir DIR        (older clients: huggingface-cli download)\n"
        f"or in Python AutoModel.from_pretrained('{source}').save_pretrained('DIR') and the same with "
        f"AutoTokenizer; copy DIR here and pass --text_encoder_source=DIR (or place the model in the "
        f"Hugging Face cache, HF_HUB_CACHE)."
    )


def resolve_source(source, revision=None, allow_download=False, hf_cache_dir=None):
    """Find a model directory for a hub id or a local path, without touching the network.

    Arguments
    ---------
    source : str or Path
        A local directory in Hugging Face format, or a hub id (``org/name``).
    revision : str, optional
        Branch, tag or commit of a hub id (ignored for a local directory).
    allow_download : bool
        Fetch a hub id that is not in the local cache (off by default: runs are offline).
    hf_cache_dir : str, optional
        The Hugging Face hub cache (default: ``HF_HUB_CACHE``).

    Returns
    -------
    tuple
        ``(path, name)``: the directory and a name for reports (``org/name@<commit>`` or the path).

    Raises
    ------
    TextEncoderNotFound
        When the model is not available; the message names it and says how to provide it.
    """
    source = str(source)
    path = Path(source).expanduser()
    if path.is_dir():
        path = path.resolve()
        _check_model_dir(path, source)
        if revision:
            logger.info("revision %r ignored for the local directory %s", revision, path)
        return path, str(path)
    if source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source:
        raise TextEncoderNotFound(
            f"Text encoder directory {source!r} does not exist.\n" + _howto("<hub id>")
        )
    from huggingface_hub import constants, snapshot_download

    try:
        folder = snapshot_download(
            source,
            revision=revision,
            cache_dir=hf_cache_dir,
            local_files_only=not allow_download,
            allow_patterns=["*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model*.bin"],
        )
    except Exception as err:  # LocalEntryNotFoundError, HFValidationError, network errors
        where = hf_cache_dir or constants.HF_HUB_CACHE
        how = "downloading failed" if allow_download else "run-time downloads are off"
        raise TextEncoderNotFound(
            f"Text encoder model {source!r} (revision {revision or 'main'}) is not available: it "
            f"is not a local directory and not in the local Hugging Face cache ({where}), and "
            f"{how} ({type(err).__name__}).\n" + _howto(source)
        ) from None
    path = Path(folder)
    _check_model_dir(path, source)
    return path, f"{source}@{path.name}"


def _check_model_dir(path, source):
    if not (path / "config.json").is_file():
        raise TextEncoderNotFound(
            f"Text encoder {source!r}: {path} has no config.json, so it is not a model saved in "
            f"Hugging Face format.\n" + _howto(source)
        )
    if not any(f.name.endswith(_WEIGHT_SUFFIXES) for f in path.iterdir()):
        raise TextEncoderNotFound(
            f"Text encoder {source!r}: {path} has no weights (model.safetensors or "
            f"pytorch_model.bin).\n" + _howto(source)
        )


def model_fingerprint(path, head=2**20, samples=64, sample_bytes=4096):
    """A content hash of a model directory that is cheap even for large weights.

    Small files are hashed whole; a weight file by its size, first and last ``head`` bytes and
    ``samples`` evenly spaced blocks, which any retraining or re-initialisation changes.

    Arguments
    ---------
    path : Path
        A model directory (see :func:`resolve_source`).

    Returns
    -------
    str
        16 hex digits.
    """
    digest = hashlib.sha256()
    for f in sorted(Path(path).iterdir()):
        if not f.is_file() or not (f.name in _MODEL_FILES or f.name.endswith(_WEIGHT_SUFFIXES)):
            continue
        size = f.stat().st_size
        digest.update(f"{f.name}\0{size}\0".encode())
        with open(f, "rb") as fh:
            if size <= 2 * head + samples * sample_bytes:
                digest.update(fh.read())
                continue
            digest.update(fh.read(head))
            for i in range(samples):
                fh.seek(head + (size - 2 * head) * i // samples)
                digest.update(fh.read(sample_bytes))
            fh.seek(size - head)
            digest.update(fh.read(head))
    return digest.hexdigest()[:16]


def text_key(text):
    """The cache key of one text.

    Example
    -------
    >>> text_key("hei")
    '38a6dcc494484553c8291fce2ab8d5b5311caa02'
    """
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Append-only, sharded store of 2-D float arrays keyed by text hash, for one encoder setting.

    Arguments
    ---------
    folder : str or Path
        The folder of this setting (created if missing).
    meta : dict
        Written to ``meta.json`` when the folder is new.
    dtype : str
        Storage dtype (``float32`` or ``float16``).
    shard_bytes : int
        Pending bytes that trigger writing a shard.
    """

    def __init__(self, folder, meta, dtype, shard_bytes=SHARD_BYTES):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype)
        self.shard_bytes = shard_bytes
        if not (self.folder / "meta.json").is_file():
            with atomic_write(self.folder / "meta.json") as f:
                json.dump(meta, f, indent=2, ensure_ascii=False)
        self._index = {}  # key -> (shard, start, stop)
        self._loaded = set()
        self._open = {}
        self._pending = {}
        self._pending_bytes = 0
        self.refresh()

    def __contains__(self, key):
        return key in self._pending or key in self._index

    def __len__(self):
        return len(self._index) + sum(1 for k in self._pending if k not in self._index)

    def refresh(self):
        """Index the shards written since the last look (by this or another process)."""
        for idx in sorted(self.folder.glob("shard-*.idx.json")):
            shard = idx.name[: -len(".idx.json")]
            if shard in self._loaded:
                continue
            self._loaded.add(shard)
            try:
                entry = json.loads(idx.read_text(encoding="utf-8"))
                keys, offsets = entry["keys"], entry["offsets"]
            except (OSError, ValueError, KeyError) as err:
                logger.warning("ignoring unreadable cache index %s (%s); delete it", idx, err)
                continue
            for i, key in enumerate(keys):
                self._index.setdefault(key, (shard, offsets[i], offsets[i + 1]))

    def get(self, key):
        """The stored array of ``key`` (a copy), or None."""
        if key in self._pending:
            return self._pending[key]
        where = self._index.get(key)
        if where is None:
            return None
        shard, start, stop = where
        data = self._open.get(shard)
        if data is None:
            path = self.folder / f"{shard}.npy"
            try:
                data = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as err:
                raise RuntimeError(
                    f"text embedding cache shard {path} is unreadable ({err}); delete the folder "
                    f"{self.folder} to recompute it"
                ) from None
            self._open[shard] = data
        return np.array(data[start:stop], dtype=self.dtype)

    def put(self, key, array):
        """Queue a ``[rows, dim]`` array; a shard is written once enough is pending."""
        if key in self:
            return
        array = np.ascontiguousarray(array, dtype=self.dtype)
        self._pending[key] = array
        self._pending_bytes += array.nbytes
        if self._pending_bytes >= self.shard_bytes:
            self.flush()

    def flush(self):
        """Write the pending arrays as one new shard (data first, then its index)."""
        if not self._pending:
            return
        keys = list(self._pending)
        arrays = [self._pending[k] for k in keys]
        offsets = np.cumsum([0] + [len(a) for a in arrays]).tolist()
        shard = f"shard-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with atomic_write(self.folder / f"{shard}.npy", "wb") as f:
            np.save(f, np.concatenate(arrays))
        with atomic_write(self.folder / f"{shard}.idx.json") as f:
            json.dump({"keys": keys, "offsets": offsets}, f)
        self._loaded.add(shard)
        for i, key in enumerate(keys):
            self._index.setdefault(key, (shard, offsets[i], offsets[i + 1]))
        self._pending.clear()
        self._pending_bytes = 0

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_open"] = {}
        return state


class TextEncoder:
    """A frozen BERT-style encoder: utterance vectors (masked mean) and token vectors, cached.

    Nothing is loaded at construction. The model directory is resolved on first use of
    :attr:`name`, :attr:`dim` or an embedding call; the weights are loaded only when a text is not
    in the cache. The encoder is not a ``torch.nn.Module``: it is never trained, never in a Brain's
    ``modules``, and not counted in the Params column (as in the paper).

    Arguments
    ---------
    source : str
        Hub id (``TurkuNLP/bert-base-finnish-uncased-v1``) or a local directory in HF format.
    revision : str, optional
        Hub revision (branch, tag or commit; pin a commit for reproducibility).
    n_layers : int
        A token vector is the sum of the last ``n_layers`` hidden states (paper: 4). Capped, with a
        warning, at the number the model has (layers + embeddings).
    exclude_special : bool
        Leave [CLS]/[SEP] out of the mean and the token vectors (B13).
    max_length : int
        Longer texts are truncated to this many tokens, [CLS] and [SEP] included.
    batch_size : int
        Texts per forward pass (texts are sorted by length first, to limit padding).
    device : str
        Where the model runs (``cpu``, ``cuda``, ``cuda:1``); outputs are on the CPU.
    cache_dir : str, optional
        Embedding cache folder; None computes every call.
    strip_accents : bool, optional
        Override the tokenizer's accent stripping (None keeps it: FinBERT's hub config strips,
        ä→a, as the paper's code did; the stand-in keeps accents).
    hub_download : bool
        Let a hub id missing from the local cache be downloaded (off: runs are offline).
    hf_cache_dir : str, optional
        Hugging Face hub cache to look in (default ``HF_HUB_CACHE``).

    Example
    -------
    >>> enc = TextEncoder("TurkuNLP/bert-base-finnish-uncased-v1", cache_dir="cache/text")
    >>> enc.n_layers, enc.exclude_special  # nothing loaded yet
    (4, True)
    """

    def __init__(
        self,
        source,
        revision=None,
        n_layers=4,
        exclude_special=True,
        max_length=512,
        batch_size=32,
        device="cpu",
        cache_dir=None,
        strip_accents=None,
        hub_download=False,
        hf_cache_dir=None,
    ):
        if int(n_layers) < 1 or int(max_length) < 3 or int(batch_size) < 1:
            raise ValueError("n_layers, batch_size must be >= 1 and max_length >= 3")
        self.source = str(source)
        self.revision = revision
        self.n_layers = int(n_layers)
        self.exclude_special = bool(exclude_special)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.device = str(device)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.strip_accents = strip_accents
        self.hub_download = bool(hub_download)
        self.hf_cache_dir = hf_cache_dir
        self._path = self._name = self._config = self._fingerprint = None
        self._model = self._tokenizer = None
        self._caches = {}
        self._warned_layers = False

    def __repr__(self):
        return (
            f"TextEncoder(source={self.source!r}, revision={self.revision!r}, "
            f"n_layers={self.n_layers}, exclude_special={self.exclude_special}, "
            f"max_length={self.max_length}, device={self.device!r}, cache_dir={self.cache_dir!r})"
        )

    def __getstate__(self):
        # Picklable for DataLoader workers: the model is reloaded lazily where needed.
        state = self.__dict__.copy()
        state["_model"] = state["_tokenizer"] = None
        return state

    # ------------------------------------------------------------------ identity
    @property
    def path(self):
        """The resolved model directory (raises :class:`TextEncoderNotFound` if unavailable)."""
        if self._path is None:
            self._path, name = resolve_source(
                self.source, self.revision, self.hub_download, self.hf_cache_dir
            )
            if self.is_standin:
                name = f"{STANDIN_DESCRIPTION}, not FinBERT: {name}"
            self._name = name
        return self._path

    @property
    def name(self):
        """What reports print: ``org/name@<commit>``, a path, or ``stand-in BERT (...): <path>``."""
        _ = self.path
        return self._name

    @property
    def is_standin(self):
        """True when the model directory was made by :func:`build_standin`."""
        return (self.path / STANDIN_MARKER).is_file()

    @property
    def config(self):
        """The model's Hugging Face config (read without loading weights)."""
        if self._config is None:
            from transformers import AutoConfig

            self._config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        return self._config

    @property
    def dim(self):
        """Size of the utterance and token vectors (the model's hidden size)."""
        return int(self.config.hidden_size)

    @property
    def layers(self):
        """The number of hidden states actually summed (``n_layers``, capped)."""
        available = int(self.config.num_hidden_layers) + 1  # + the embedding output
        if self.n_layers > available and not self._warned_layers:
            self._warned_layers = True
            logger.warning(
                "n_layers=%d but %s has %d hidden states: summing all of them",
                self.n_layers,
                self.name,
                available,
            )
        return min(self.n_layers, available)

    @property
    def fingerprint(self):
        """Content hash of the model directory (:func:`model_fingerprint`)."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.path)
        return self._fingerprint

    @property
    def effective_max_length(self):
        """``max_length``, capped at the model's position embeddings."""
        return min(self.max_length, int(getattr(self.config, "max_position_embeddings", 10**9)))

    def _setting(self, pooling):
        """The fields that define a cache folder."""
        return {
            "format": CACHE_FORMAT,
            "fingerprint": self.fingerprint,
            "layers": self.layers,
            "exclude_special": self.exclude_special,
            "max_length": self.effective_max_length,
            "strip_accents": self.strip_accents,
            "pooling": pooling,
            "dtype": "float32" if pooling == "mean" else "float16",
        }

    def _cache(self, pooling):
        if self.cache_dir is None:
            return None
        if pooling not in self._caches:
            setting = self._setting(pooling)
            key = hashlib.sha1(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:16]
            meta = dict(setting, model=self.name, dim=self.dim)
            self._caches[pooling] = EmbeddingCache(
                self.cache_dir / f"{pooling}-{key}", meta, setting["dtype"]
            )
        return self._caches[pooling]

    # ------------------------------------------------------------------ public calls
    def embed(self, texts):
        """Utterance vectors: the mean of the token vectors over real tokens (B5).

        Arguments
        ---------
        texts : list of str
            Transcripts; None or "" give a zero vector (B7).

        Returns
        -------
        torch.Tensor
            ``[len(texts), dim]`` float32 on the CPU.
        """
        arrays = self._lookup(texts, "mean")
        if not arrays:
            return torch.zeros(0, self.dim)
        return torch.from_numpy(np.concatenate(arrays).astype(np.float32, copy=False))

    def embed_tokens(self, texts):
        """Token vectors without padding (for a BLSTM text branch), stored as float16.

        Arguments
        ---------
        texts : list of str
            Transcripts; a text without tokens gives one zero row, so lengths are never 0 (B7).

        Returns
        -------
        list of torch.Tensor
            One ``[n_tokens_i, dim]`` float32 tensor per text (values rounded to float16 whether
            they come from the cache or not, so a rerun sees exactly the same inputs).
        """
        return [torch.from_numpy(a.astype(np.float32)) for a in self._lookup(texts, "tokens")]

    def precompute(self, texts, tokens=False):
        """Fill the cache with every text not in it yet; call on the main process before training.

        Arguments
        ---------
        texts : iterable of str
            Transcripts (duplicates are fine).
        tokens : bool
            Token vectors (:meth:`embed_tokens`) instead of utterance vectors.

        Returns
        -------
        int
            How many distinct texts were computed.
        """
        pooling = "tokens" if tokens else "mean"
        cache = self._cache(pooling)
        if cache is None:
            raise ValueError("precompute needs a cache_dir to store its results")
        cache.refresh()
        todo = sorted({_clean(t) for t in texts if text_key(_clean(t)) not in cache})
        if todo:
            start = time.time()
            for text, array in self._compute(todo, pooling):
                cache.put(text_key(text), array)
            cache.flush()
            logger.info(
                "text encoder %s: %d %s embeddings computed in %.1f s into %s",
                self.name,
                len(todo),
                pooling,
                time.time() - start,
                cache.folder,
            )
        return len(todo)

    # ------------------------------------------------------------------ internals
    def _lookup(self, texts, pooling):
        texts = [_clean(t) for t in texts]
        keys = [text_key(t) for t in texts]
        cache = self._cache(pooling)
        found = {}
        if cache is not None:
            for key in set(keys):
                if key not in cache:
                    cache.refresh()  # another process may have written it meanwhile
                    break
            found = {k: v for k in set(keys) if (v := cache.get(k)) is not None}
        missing = sorted({t for t, k in zip(texts, keys) if k not in found})
        if missing:
            for text, array in self._compute(missing, pooling):
                found[text_key(text)] = array
                if cache is not None:
                    cache.put(text_key(text), array)
            if cache is not None:
                cache.flush()
        return [found[k] for k in keys]

    def _compute(self, texts, pooling):
        """Yield ``(text, [rows, dim] array)`` for each text, longest first, batch by batch."""
        self._load()
        from tqdm import tqdm

        order = sorted(texts, key=len, reverse=True)
        empty = 0
        n_batches = (len(order) + self.batch_size - 1) // self.batch_size
        bar = tqdm(total=len(order), desc="text encoder", disable=True if n_batches < 20 else None)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            hidden, mask = self._forward(batch)
            counts = mask.sum(dim=1)
            empty += int((counts == 0).sum())
            if pooling == "mean":
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                means = (hidden * weights).sum(dim=1) / counts.clamp(min=1).unsqueeze(-1)
                rows = means.float().cpu().numpy()
                for text, row in zip(batch, rows):
                    yield text, row[None, :].copy()
            else:
                hidden, mask = hidden.to(torch.float16).cpu(), mask.cpu()
                for i, text in enumerate(batch):
                    tokens = hidden[i][mask[i]]
                    if len(tokens) == 0:
                        tokens = torch.zeros(1, hidden.shape[-1], dtype=torch.float16)
                    yield text, tokens.numpy()
            bar.update(len(batch))
        bar.close()
        if empty:
            logger.warning(
                "%d text(s) have no token besides [CLS]/[SEP] (empty transcript?): "
                "their embedding is a zero vector",
                empty,
            )

    def _forward(self, batch):
        """Token vectors ``[B, T, dim]`` (sum of the last layers) and the real-token mask ``[B, T]``."""
        enc = self._tokenizer(
            batch,
            padding=True,
            truncation=True,
            max_length=self.effective_max_length,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if "token_type_ids" in enc:
            inputs["token_type_ids"] = enc["token_type_ids"]
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self._model(**inputs, output_hidden_states=True)  # keywords: B13
            hidden = torch.stack(out.hidden_states[-self.layers :]).sum(dim=0)
        mask = inputs["attention_mask"].bool()
        if self.exclude_special:
            mask &= ~enc["special_tokens_mask"].to(self.device).bool()
        return hidden, mask

    def _load(self):
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        path = self.path
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise TextEncoderNotFound(
                f"Cannot load the text encoder {self.source!r} from {path}: {err}\n"
                + _howto(self.source)
            ) from None
        self._set_accents(tokenizer)
        model.float().eval().requires_grad_(False).to(self.device)
        self._tokenizer, self._model = tokenizer, model
        logger.info("loaded text encoder %s on %s", self.name, self.device)

    def _set_accents(self, tokenizer):
        """Apply ``strip_accents`` and warn when stripping hides accented vocabulary (B13)."""
        from tokenizers import normalizers

        backend = getattr(tokenizer, "backend_tokenizer", None)
        norm = getattr(backend, "normalizer", None)
        if not isinstance(norm, normalizers.BertNormalizer):
            if self.strip_accents is not None:
                logger.warning("strip_accents ignored: %s has no BERT normaliser", self.name)
            return
        strips = norm.lowercase if norm.strip_accents is None else norm.strip_accents
        if self.strip_accents is not None and bool(self.strip_accents) != strips:
            strips = bool(self.strip_accents)
            backend.normalizer = normalizers.BertNormalizer(
                clean_text=norm.clean_text,
                handle_chinese_chars=norm.handle_chinese_chars,
                strip_accents=strips,
                lowercase=norm.lowercase,
            )
        if strips and any(c in token for token in tokenizer.get_vocab() for c in "äöå"):
            logger.warning(
                "%s strips accents (ä→a, ö→o) although its vocabulary has ä/ö tokens, which are "
                "then never used; this is the paper's setting (original_recipes.md §2.6). Set "
                "strip_accents=False to keep them.",
                self.name,
            )


def _clean(text):
    return "" if text is None else str(text)


# ---------------------------------------------------------------------- stand-in model
def build_standin(
    texts,
    out_dir,
    hidden_size=768,
    num_layers=4,
    num_heads=12,
    intermediate_size=3072,
    vocab_size=2000,
    seed=0,
):
    """Build a small random BERT with a WordPiece vocabulary trained on ``texts``, in HF format.

    The folder loads with ``TextEncoder(source=out_dir)`` like FinBERT does, and is marked as a
    stand-in by ``STANDIN.json`` (written last, so it also marks a finished build), a
    ``topic_id_standin`` field in ``config.json`` and a README, so that reports name it
    "stand-in BERT (random init, demo vocab)". The tokenizer lowercases and keeps ä/ö/å.
    Deterministic for given texts (order and duplicates do not matter) and settings; a rerun with
    the same ones does nothing, with others rebuilds.

    Arguments
    ---------
    texts : iterable of str
        Training text for the vocabulary (empty ones are skipped).
    out_dir : str or Path
        The model folder.
    hidden_size, num_layers, num_heads, intermediate_size : int
        BERT sizes (``hidden_size`` divisible by ``num_heads``). FinBERT's width by default: a mean
        of narrow random vectors is a lossy projection of the words (demo manual text, logistic
        regression on frozen vectors: 73 % test accuracy at 128 wide, 82 % at 768, bag of words
        86.5 %; issue 12), so every row that reads text vectors gets them at the real encoder's
        size. Four layers, the fewest for which the paper's "sum of the last 4" takes transformer
        layers only; they keep it cheap (~10 s to build, 116 MB).
    vocab_size : int
        Upper bound of the WordPiece vocabulary (small corpora give fewer).
    seed : int
        Seed of the weight initialisation.

    Returns
    -------
    Path
        ``out_dir``.
    """
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizer

    out_dir = Path(out_dir)
    corpus = sorted({" ".join(str(t).split()) for t in texts if t is not None and str(t).strip()})
    if not corpus:
        raise ValueError("build_standin needs at least one non-empty text")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    settings = {
        "hidden_size": int(hidden_size),
        "num_layers": int(num_layers),
        "num_heads": int(num_heads),
        "intermediate_size": int(intermediate_size),
        "vocab_size": int(vocab_size),
        "seed": int(seed),
        "max_position_embeddings": 512,
        "n_texts": len(corpus),
        "texts_sha256": hashlib.sha256("\n".join(corpus).encode("utf-8")).hexdigest(),
    }
    if standin_settings(out_dir) == settings:
        logger.info("stand-in text encoder %s is up to date", out_dir)
        return out_dir
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        vocab = train_wordpiece_vocab(corpus, settings["vocab_size"])
        (tmp / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
        wordpiece = BertWordPieceTokenizer(
            {t: i for i, t in enumerate(vocab)},
            clean_text=True,
            handle_chinese_chars=True,
            strip_accents=False,
            lowercase=True,
        )
        tokenizer = BertTokenizer(
            tokenizer_object=wordpiece._tokenizer,
            do_lower_case=True,
            strip_accents=False,
            model_max_length=settings["max_position_embeddings"],
        )
        tokenizer.save_pretrained(str(tmp))
        config = BertConfig(
            vocab_size=wordpiece.get_vocab_size(),
            hidden_size=settings["hidden_size"],
            num_hidden_layers=settings["num_layers"],
            num_attention_heads=settings["num_heads"],
            intermediate_size=settings["intermediate_size"],
            max_position_embeddings=settings["max_position_embeddings"],
            pad_token_id=wordpiece.token_to_id("[PAD]"),
        )
        config.topic_id_standin = True
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings["seed"])
            model = BertModel(config)
        model.save_pretrained(str(tmp))
        (tmp / "README.md").write_text(
            f"# {STANDIN_DESCRIPTION}\n\nNOT FinBERT. Random weights (seed {seed}) and a WordPiece "
            f"vocabulary of {wordpiece.get_vocab_size()} entries trained on {len(corpus)} demo "
            "transcripts, built by `python -m topic_id.text build-standin` for tests and the "
            "built-in demo corpus. Results obtained with it say nothing about FinBERT.\n",
            encoding="utf-8",
        )
        marker = {
            "standin": True,
            "description": STANDIN_DESCRIPTION,
            "not": "TurkuNLP/bert-base-finnish-uncased-v1 (FinBERT) or any pretrained model",
            "vocab_size": wordpiece.get_vocab_size(),
            "settings": settings,
        }
        with atomic_write(tmp / STANDIN_MARKER) as f:
            json.dump(marker, f, indent=2, ensure_ascii=False)
        swap_dir(tmp, out_dir, settings)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built %s (%d-token vocabulary) in %s", STANDIN_DESCRIPTION, config.vocab_size, out_dir)
    return out_dir


def train_wordpiece_vocab(texts, vocab_size, min_frequency=2):
    """Train a WordPiece vocabulary deterministically (BPE-style merges, ties broken by name).

    The ``tokenizers`` trainer breaks ties between equally frequent pairs differently from run to
    run, so the stand-in's vocabulary (and hence every demo result) would not be reproducible.
    This is the same algorithm: texts are normalised and split as BERT does (lowercase, accents
    kept), words start as characters (``##``-prefixed after the first), the alphabet holds every
    character in both forms, and the most frequent adjacent pair (alphabetically first among
    equals) is merged until ``vocab_size`` entries exist or no pair occurs ``min_frequency`` times.

    Arguments
    ---------
    texts : iterable of str
        Training text.
    vocab_size : int
        Upper bound of the vocabulary, special tokens included.
    min_frequency : int
        Least count of a pair worth merging.

    Returns
    -------
    list of str
        The vocabulary in id order: special tokens, the alphabet, then merges in order.

    Example
    -------
    >>> train_wordpiece_vocab(["talo talossa", "talo"], 20)[5:]
    ['a', 'l', 'o', 's', 't', '##a', '##l', '##o', '##s', '##t', '##al', '##alo', 'talo']
    """
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(strip_accents=False, lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts = Counter(
        word
        for text in texts
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(str(text)))
    )
    words = sorted(counts)
    freq = [counts[w] for w in words]
    symbols = [[w[0]] + ["##" + c for c in w[1:]] for w in words]
    # Every character both word-initially and as a continuation, so that no word made of seen
    # characters becomes [UNK].
    chars = sorted({c for w in words for c in w})
    vocab = list(SPECIAL_TOKENS)
    vocab += [s for s in chars + ["##" + c for c in chars] if s not in vocab]
    known = set(vocab)
    pairs, holders = Counter(), defaultdict(set)
    for i, syms in enumerate(symbols):
        for pair in zip(syms, syms[1:]):
            pairs[pair] += freq[i]
            holders[pair].add(i)
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        negative, pair = heapq.heappop(heap)
        if pairs.get(pair) != -negative:
            continue  # a stale heap entry
        if -negative < min_frequency:
            break
        first, second = pair
        merged = first + second[2:]
        changed = set()
        for i in sorted(holders.pop(pair)):
            old = symbols[i]
            new, j = [], 0
            while j < len(old):
                if j + 1 < len(old) and old[j] == first and old[j + 1] == second:
                    new.append(merged)
                    j += 2
                else:
                    new.append(old[j])
                    j += 1
            if len(new) == len(old):
                continue
            for p in zip(old, old[1:]):
                pairs[p] -= freq[i]
                changed.add(p)
            for p in zip(new, new[1:]):
                pairs[p] += freq[i]
                holders[p].add(i)
                changed.add(p)
            symbols[i] = new
        for p in changed:
            if pairs[p] > 0:
                heapq.heappush(heap, (-pairs[p], p))
            else:
                del pairs[p]
        pairs.pop(pair, None)
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
    return vocab


def standin_settings(folder):
    """The ``settings`` recorded in a stand-in folder's marker file, or None (no finished build)."""
    try:
        return json.loads((Path(folder) / STANDIN_MARKER).read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def swap_dir(new, target, settings):
    """Move the finished folder ``new`` to ``target``, replacing an older build (any stand-in)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        # Another process finished the same build first: keep its result if it matches.
        if standin_settings(target) != settings:
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest_texts(folder, splits=("train", "dev", "test"), column="words"):
    """The non-empty ``column`` values of the split manifests in ``folder`` (train required)."""
    folder = Path(folder)
    texts = []
    for split in splits:
        path = folder / f"{split}.csv"
        if not path.is_file():
            if split == "train":
                raise FileNotFoundError(f"{path} is missing: prepare the corpus first")
            continue
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if column not in (reader.fieldnames or []):
                raise ValueError(f"{path} has no {column!r} column (columns: {reader.fieldnames})")
            texts += [row[column] for row in reader if (row[column] or "").strip()]
    return texts


def main(argv=None):
    """``python -m topic_id.text build-standin --manifests DIR --out DIR [sizes]``."""
    parser = argparse.ArgumentParser(prog="python -m topic_id.text", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build-standin",
        help=f"build a {STANDIN_DESCRIPTION} from the 'words' of a prepared corpus",
    )
    build.add_argument("--manifests", required=True, type=Path, help="folder with train/dev/test.csv")
    build.add_argument("--out", required=True, type=Path, help="model folder to write")
    build.add_argument("--hidden-size", type=int, default=768)
    build.add_argument("--num-layers", type=int, default=4)
    build.add_argument("--num-heads", type=int, default=12)
    build.add_argument("--intermediate-size", type=int, default=3072)
    build.add_argument("--vocab-size", type=int, default=2000)
    build.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        texts = read_manifest_texts(args.manifests)
        out = build_standin(
            texts,
            args.out,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            intermediate_size=args.intermediate_size,
            vocab_size=args.vocab_size,
            seed=args.seed,
        )
    except (OSError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
