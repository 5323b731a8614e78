"""A BERT-style text encoder trained with the topic head (the fine-tuned text row, ours).

The frozen text rows (:class:`topic_id.models.text_encoder.TextEncoder`) embed each transcript once
and train a linear head on the cached vectors. Here the encoder is a ``torch.nn.Module`` in the
Brain's ``modules``: the item pipeline tokenizes each transcript (:meth:`FinetunedTextEncoder.tokenize`),
batches are padded to their longest text, and every step runs and updates the encoder. The
utterance vector is pooled from the sum of the last ``n_layers`` hidden states, as the frozen rows'
is: the mean over real tokens ([CLS]/[SEP] left out unless ``exclude_special`` is False) or the
[CLS] vector.

The model is found as the frozen encoder finds it (a local folder or the local Hugging Face cache,
:func:`topic_id.models.hub.resolve_model`), and a stand-in is named one (:attr:`FinetunedTextEncoder.name`).
With ``pretrained=False`` nothing is read at construction: the architecture is built from the
folder's config on :meth:`FinetunedTextEncoder.materialize` and the weights come from a state dict
(an exported model's ``text_model.ckpt``), which a ``load_state_dict`` before that keeps until then.
"""

import torch
from torch.nn.modules.module import _IncompatibleKeys

from topic_id.errors import ConfigError
from topic_id.models.text_encoder import TextEncoder

POOLINGS = ("mean", "cls")
TRUNCATION_SIDES = ("right", "left")
LR_SCHEDULES = ("linear", "constant_with_warmup", "constant", "cosine", "polynomial", "inverse_sqrt")
"""``transformers.get_scheduler`` names that step per batch from a warm-up and a step count alone."""


class FinetunedTextEncoder(torch.nn.Module):
    """Utterance vectors ``[B, dim]`` from padded token ids, with the encoder's weights trainable.

    Arguments
    ---------
    source : str
        Hub id (``TurkuNLP/bert-base-finnish-uncased-v1``) or a local model folder.
    revision : str, optional
        Hub revision.
    hub_download : bool
        Let a hub id missing from the local cache be downloaded.
    n_layers : int
        Token vectors are the sum of the last ``n_layers`` hidden states (capped at what the model
        has; a large value sums them all).
    pooling : str
        ``mean`` (over real tokens) or ``cls`` (the first token's vector).
    exclude_special : bool
        Leave [CLS]/[SEP] out of the mean.
    max_length : int
        Longer texts are truncated to this many tokens, [CLS] and [SEP] included (capped at the
        model's position embeddings).
    truncation_side : str
        ``right`` keeps a long text's beginning, ``left`` its end.
    strip_accents : bool, optional
        Override the tokenizer's accent stripping (None keeps its own).
    pretrained : bool
        Load the model now with its pretrained weights (training); False waits for
        :meth:`materialize` and a state dict (inference from an export).

    Example
    -------
    >>> enc = FinetunedTextEncoder("TurkuNLP/bert-base-finnish-uncased-v1", pretrained=False)
    >>> enc.pooling, enc.materialized  # nothing loaded yet
    ('mean', False)
    """

    def __init__(self, source, revision=None, hub_download=False, n_layers=4, pooling="mean",
                 exclude_special=True, max_length=512, truncation_side="right", strip_accents=None,
                 pretrained=True):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"--text_pooling={pooling} is not one of {', '.join(POOLINGS)}")
        if truncation_side not in TRUNCATION_SIDES:
            raise ConfigError(f"--truncation_side={truncation_side} is not one of {', '.join(TRUNCATION_SIDES)}")
        # The frozen encoder's resolver, config and tokenizer loading; it never runs a model here.
        self.resolver = TextEncoder(source, revision, n_layers, exclude_special, max_length,
                                    strip_accents=strip_accents, hub_download=hub_download)
        self.pooling = pooling
        self.truncation_side = truncation_side
        self.model = None
        self._tokenizer = None
        self._pending = None
        if pretrained:
            self.materialize(weights=True)

    # ------------------------------------------------------------------ identity
    @property
    def source(self):
        """The model's hub id or folder (settable before :meth:`materialize`)."""
        return self.resolver.source

    @source.setter
    def source(self, value):
        if self.materialized:
            raise ValueError("the model is loaded already: set source before materialize()")
        self.resolver = TextEncoder(value, self.resolver.revision, self.resolver.n_layers,
                                    self.resolver.exclude_special, self.resolver.max_length,
                                    strip_accents=self.resolver.strip_accents,
                                    hub_download=self.resolver.hub_download)

    @property
    def name(self):
        """What reports print (``org/name@<commit>``, a path, or the stand-in's description)."""
        return self.resolver.name

    @property
    def dim(self):
        """The utterance vector's size: the model's hidden size."""
        return self.resolver.dim

    @property
    def materialized(self):
        """Whether the model is built."""
        return self.model is not None

    def materialize(self, weights=False):
        """Build the model (and tokenizer) now; a state dict given before is loaded into it.

        Arguments
        ---------
        weights : bool
            Start from the folder's pretrained weights; False builds the architecture only (the
            weights then come from a state dict).

        Returns
        -------
        FinetunedTextEncoder
            Itself.
        """
        if not self.materialized:
            self.model = self.resolver.load_model(weights=weights)
            self.tokenizer.truncation_side = self.truncation_side
            if self._pending is not None:
                state, self._pending = self._pending, None
                super().load_state_dict(state)
        return self

    @property
    def tokenizer(self):
        """The model's tokenizer (truncating on :attr:`truncation_side`)."""
        if self._tokenizer is None:
            self._tokenizer = self.resolver.load_tokenizer()
            self._tokenizer.truncation_side = self.truncation_side
        return self._tokenizer

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """As torch's; before :meth:`materialize` of an architecture-only model, kept for it."""
        if not self.materialized:
            self._pending = dict(state_dict)
            return _IncompatibleKeys([], [])
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ data and forward
    def tokenize(self, text):
        """Token ids of one transcript, [CLS] and [SEP] included, truncated to ``max_length``.

        Arguments
        ---------
        text : str
            A transcript (None or "" gives [CLS] [SEP]).

        Returns
        -------
        torch.LongTensor
            ``[n_tokens]``.
        """
        ids = self.tokenizer("" if text is None else str(text), truncation=True,
                             max_length=self.resolver.effective_max_length)["input_ids"]
        return torch.LongTensor(ids)

    def forward(self, ids, lens):
        """Pooled utterance vectors of a right-padded batch of token ids.

        Arguments
        ---------
        ids : torch.LongTensor
            ``[B, T]`` token ids, padded with anything after each text's length.
        lens : torch.Tensor
            ``[B]`` relative lengths (SpeechBrain's convention).

        Returns
        -------
        torch.Tensor
            ``[B, dim]``.
        """
        if not self.materialized:
            raise RuntimeError("call materialize() before the forward pass")
        length = torch.round(lens * ids.shape[1]).long()
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < length[:, None]
        pad = self.model.config.pad_token_id
        ids = ids.masked_fill(~mask, 0 if pad is None else pad)
        out = self.model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
        hidden = torch.stack(out.hidden_states[-self.resolver.layers:]).sum(dim=0)
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.resolver.exclude_special:
            special = torch.tensor(self.tokenizer.all_special_ids, device=ids.device)
            mask = mask & ~torch.isin(ids, special)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
