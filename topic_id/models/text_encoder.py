"""Frozen BERT-style text encoder, cached on disk (the paper's FinBERT branch).

The encoder follows the published recipes (FinBERT = ``TurkuNLP/bert-base-finnish-uncased-v1`` on
LP: a token is the sum of the last 4 hidden layers, an utterance the mean of its tokens) without
their defects (docs/published_recipes.md, 'Frozen BERT inside the data pipeline'): the mean runs
over real tokens only, not the batch's padding; [CLS]/[SEP] are left out of it by default and the
attention mask is passed by keyword; an empty transcript gives a zero vector instead of a crash;
the model runs on the configured device, once per distinct text; and accent stripping (which the
hub tokenizer config turns on, so ä becomes a and ö o) is a setting instead of an accident.

The model comes from a local folder or the local Hugging Face cache (:func:`topic_id.models.hub.
resolve_model`); nothing is downloaded at run time unless ``hub_download=True``. A missing model
raises :class:`topic_id.models.hub.ModelNotFound` with the commands that provide it. The stand-in of the
tests and the demo (:func:`topic_id.standins.bert.build_standin`) loads through the same code path
and is named a stand-in everywhere (:attr:`TextEncoder.name`). Embeddings are kept in
:mod:`topic_id.models.embedding_cache`, one folder per setting.
"""

import logging
import time
from pathlib import Path

import numpy as np
import torch

from topic_id.models.embedding_cache import (
    CACHE_FORMAT,
    EmbeddingCache,
    model_fingerprint,
    setting_key,
    text_key,
)
from topic_id.models.hub import (
    STANDIN_MARKER,
    TEXT_ENCODER,
    ModelNotFound,
    load_config,
    load_tokenizer,
    refetch,
    resolve_model,
)

logger = logging.getLogger(__name__)


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
        Leave [CLS]/[SEP] out of the mean and the token vectors (the published mean included them).
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
        """The resolved model folder (raises :class:`topic_id.models.hub.ModelNotFound` if unavailable)."""
        if self._path is None:
            self._path, self._name = resolve_model(
                self.source, self.revision, self.hub_download, self.hf_cache_dir, TEXT_ENCODER
            )
        return self._path

    @property
    def name(self):
        """What reports print: ``org/name@<commit>``, a path, or ``stand-in BERT (...): <path>``."""
        _ = self.path
        return self._name

    @property
    def is_standin(self):
        """True when the model folder is a stand-in (:mod:`topic_id.standins`)."""
        return (self.path / STANDIN_MARKER).is_file()

    @property
    def config(self):
        """The model's Hugging Face config (read without loading weights)."""
        if self._config is None:
            self._config = load_config(self.path, self.source, TEXT_ENCODER)
        return self._config

    @property
    def dim(self):
        """Size of the utterance and token vectors: the model's hidden size, read from its config.

        Reading it resolves the model and reads ``config.json`` only (no weights, no forward pass),
        so a caller can check ``text_dim`` against it before training.
        """
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
            key = setting_key(setting)
            meta = dict(setting, model=self.name, dim=self.dim)
            self._caches[pooling] = EmbeddingCache(
                self.cache_dir / f"{pooling}-{key}", meta, setting["dtype"]
            )
        return self._caches[pooling]

    # ------------------------------------------------------------------ public calls
    def embed(self, texts):
        """Utterance vectors: the mean of the token vectors over real tokens (padding never enters).

        Arguments
        ---------
        texts : list of str
            Transcripts; None or "" give a zero vector (no transcript is no crash).

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
            Transcripts; a text without tokens gives one zero row, so lengths are never 0.

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
            out = self._model(**inputs, output_hidden_states=True)  # by keyword: no positional mix-up
            hidden = torch.stack(out.hidden_states[-self.layers :]).sum(dim=0)
        mask = inputs["attention_mask"].bool()
        if self.exclude_special:
            mask &= ~enc["special_tokens_mask"].to(self.device).bool()
        return hidden, mask

    def _load(self):
        if self._model is not None:
            return
        tokenizer = self.load_tokenizer()
        model = self.load_model().eval().requires_grad_(False).to(self.device)
        self._tokenizer, self._model = tokenizer, model
        logger.info("loaded text encoder %s on %s", self.name, self.device)

    def load_model(self, weights=True):
        """The Hugging Face model (float32, on the CPU, trainable as loaded).

        Arguments
        ---------
        weights : bool
            Load the folder's weights; False builds the architecture of its config with random
            weights (for a caller that loads its own weights next, e.g. an exported fine-tuned
            encoder).

        Returns
        -------
        transformers.PreTrainedModel
        """
        from transformers import AutoModel

        if not weights:
            return self._loading(lambda: AutoModel.from_config(self.config)).float()
        return self._loading(
            lambda: AutoModel.from_pretrained(self.path, config=self.config, local_files_only=True)
        ).float()

    def load_tokenizer(self):
        """The model's tokenizer, with the accent stripping ``strip_accents`` asks for.

        Raises
        ------
        ModelNotFound
            The folder holds no tokenizer that fits the model.
        """
        # The config is passed on: a config.json without model_type loads only through it.
        tokenizer = self._loading(lambda: load_tokenizer(self.path, self.config))
        self._set_accents(tokenizer)
        return tokenizer

    def _loading(self, load):
        """``load()``, its failure to read the model folder raised as :class:`ModelNotFound`."""
        path = self.path  # a source that does not resolve raises its own ModelNotFound
        try:
            return load()
        except (OSError, ValueError, KeyError) as err:
            raise ModelNotFound(
                f"Cannot load the text encoder {self.source!r} from {path}: {err}"
                + refetch(self.source, TEXT_ENCODER)
            ) from None

    def _set_accents(self, tokenizer):
        """Apply ``strip_accents`` and warn when stripping hides accented vocabulary."""
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
                "then never used; this is the paper's setting (its recipes left the hub default). Set "
                "strip_accents=False to keep them.",
                self.name,
            )


def _clean(text):
    return "" if text is None else str(text)
