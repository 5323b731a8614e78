"""The on-disk store of text embeddings: one append-only, sharded folder per encoder setting.

:class:`topic_id.models.text_encoder.TextEncoder` computes each distinct text once per setting and keeps the
result here, so that every epoch, seed and system reading the same transcripts with the same
encoder reuses it, instead of running the encoder per utterance per epoch.

Cache layout (``cache_dir``)::

    <cache_dir>/<pooling>-<key>/     one folder per setting; pooling is "mean" or "tokens"
        meta.json                    the fields hashed into <key> + the model name, for humans
        shard-<id>.npy               "mean": float32 [n_texts, dim]; "tokens": float16 [n_tokens, dim]
        shard-<id>.idx.json          {"keys": [sha1(text), ...], "offsets": [0, ...]}, written last

``<key>`` hashes the model fingerprint (:func:`model_fingerprint`: config, tokenizer files and a
sample of the weight bytes, so a moved copy still hits and a changed model misses), the layers
summed, exclude_special, max_length, strip_accents, pooling and dtype (:func:`setting_key`).
Shards are immutable, uniquely named and written through a temporary file, the index after the
data, so a crash leaves at most an invisible orphan, and any number of processes may read (and
even write) a folder at the same time. The intended use under DDP: the main process calls
:meth:`topic_id.models.text_encoder.TextEncoder.precompute`; the others then only read.
"""

import hashlib
import json
import logging
import os
import time
import uuid
from pathlib import Path

import numpy as np

from topic_id.models.hub import WEIGHT_SUFFIXES
from corpus_tools.files import atomic_write

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
SHARD_BYTES = 128 * 2**20
"""A cache shard is written once this many bytes of new embeddings are pending."""
_MODEL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)


def model_fingerprint(path, head=2**20, samples=64, sample_bytes=4096):
    """A content hash of a model directory that is cheap even for large weights.

    Small files are hashed whole; a weight file by its size, first and last ``head`` bytes and
    ``samples`` evenly spaced blocks, which any retraining or re-initialisation changes.

    Arguments
    ---------
    path : Path
        A model directory (see :func:`topic_id.models.hub.resolve_model`).

    Returns
    -------
    str
        16 hex digits.
    """
    digest = hashlib.sha256()
    for f in sorted(Path(path).iterdir()):
        if not f.is_file() or not (f.name in _MODEL_FILES or f.name.endswith(WEIGHT_SUFFIXES)):
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



def setting_key(setting):
    """The ``<key>`` of a setting's folder: 16 hex digits of the SHA-1 of its sorted JSON.

    Example
    -------
    >>> setting_key({"pooling": "mean", "layers": 4}) == setting_key({"layers": 4, "pooling": "mean"})
    True
    """
    return hashlib.sha1(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:16]
