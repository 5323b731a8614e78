"""The ASR's output units: SentencePiece trained on a manifest's transcripts, and the paper's
post-processing of its hypotheses.

:class:`Tokenizer` trains SentencePiece on the transcribed training rows into the run's folder (no
path outside the run); every hypothesis it turns into words goes through
:func:`filter_repetitions`, which cuts the loops an attention decoder falls into.
"""

import logging
import os
import tempfile
from pathlib import Path

from speechbrain.tokenizers.SentencePiece import SentencePiece

from data_prep.prepared import read_manifest

logger = logging.getLogger(__name__)


def filter_repetitions(words, max_repetition_length=3):
    """Cut attention-decoder loops: an n-gram may repeat back to back at most ``⌊3/n⌋`` times.

    The paper's post-processing (``filter_repetitions(seq, 3)`` in the published recipes), written
    anew: runs of one repeated n-gram are shortened to ``max(1, max_repetition_length // n)``
    copies, for every n, until no such run is left.

    Arguments
    ---------
    words : list of str
        A hypothesis, as words.
    max_repetition_length : int
        The allowed number of back-to-back repeats of a single word.

    Returns
    -------
    list of str

    Example
    -------
    >>> filter_repetitions("no no no no no joo".split())
    ['no', 'no', 'no', 'joo']
    >>> filter_repetitions("mä meen mä meen mä meen kotiin".split())
    ['mä', 'meen', 'kotiin']
    """
    seq = list(words)
    changed = True
    while changed:
        changed = False
        for n in range(1, len(seq) // 2 + 1):
            shorter = _collapse(seq, n, max(1, max_repetition_length // n))
            if len(shorter) < len(seq):
                seq, changed = shorter, True
                break
    return seq


def _collapse(seq, n, keep):
    """Shorten every run of a repeated n-gram in ``seq`` to ``keep`` copies (left to right)."""
    out, i = [], 0
    while i < len(seq):
        repeats = 1
        while i + (repeats + 1) * n <= len(seq) and (
            seq[i + repeats * n] == seq[i] and seq[i + repeats * n : i + (repeats + 1) * n] == seq[i : i + n]
        ):
            repeats += 1
        if repeats > keep:
            out.extend(seq[i : i + n] * keep)
            i += repeats * n
        else:
            out.append(seq[i])
            i += 1
    return out


class Tokenizer:
    """SentencePiece units of the ASR, trained on the transcribed training rows of a manifest.

    Settings as the paper's model: ``<unk>`` at id 0 and no bos/eos/pad
    pieces, so id 0 doubles as CTC blank, bos and eos. Trained once, on the main process, into
    ``model_dir`` (the run's own folder) through SpeechBrain's ``SentencePiece``; loaded lazily,
    so building a model from the YAML needs no data.

    Arguments
    ---------
    model_dir : str
        Where ``<vocab_size>_<model_type>.model`` lives.
    train_csv : str
        Training manifest; rows with ``subset == transcribed`` and a non-empty ``words`` are used.
    vocab_size : int
        Number of units (the decoder's ``output_neurons``).
    model_type : str
        ``unigram`` (paper), ``bpe`` or ``char``.
    character_coverage : float
        SentencePiece ``character_coverage``.
    max_sentencepiece_length : int
        Longest piece, in characters.
    bos_index, eos_index : int
        The ids the decoder starts and ends a sequence with (0, as ``<unk>`` and the CTC blank).
    """

    def __init__(self, model_dir, train_csv, vocab_size, model_type="unigram",
                 character_coverage=1.0, max_sentencepiece_length=10, bos_index=0, eos_index=0):
        self.model_dir = Path(model_dir)
        self.train_csv = train_csv
        self.vocab_size = int(vocab_size)
        self.model_type = model_type
        self.character_coverage = character_coverage
        self.max_sentencepiece_length = max_sentencepiece_length
        self.bos_index = bos_index
        self.eos_index = eos_index
        self._sp = None

    @property
    def model_file(self):
        """The SentencePiece model file."""
        return self.model_dir / f"{self.vocab_size}_{self.model_type}.model"

    def train(self):
        """Train the model unless it exists; the files appear in ``model_dir`` only when complete."""
        if self.model_file.is_file():
            return
        texts = [r["words"].strip() for r in read_manifest(self.train_csv)
                 if r.get("subset") == "transcribed" and (r.get("words") or "").strip()]
        if not texts:
            raise ValueError(f"{self.train_csv}: no transcribed row with words to train the tokenizer on")
        self.model_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.model_dir, prefix=".train-") as tmp:
            text_file = Path(tmp) / "train_text.txt"
            text_file.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
            try:
                SentencePiece(
                    model_dir=tmp, vocab_size=self.vocab_size, text_file=str(text_file),
                    model_type=self.model_type, character_coverage=self.character_coverage,
                    max_sentencepiece_length=self.max_sentencepiece_length,
                    bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0,
                )
            except RuntimeError as err:
                raise ValueError(
                    f"cannot train a {self.vocab_size}-unit {self.model_type} SentencePiece model on "
                    f"the {len(texts)} transcripts of {self.train_csv} ({err}); lower output_neurons"
                ) from err
            stem = self.model_file.stem
            for name in ("train_text.txt", f"{stem}.vocab", f"{stem}.model"):  # model last: marks done
                os.replace(Path(tmp) / name, self.model_dir / name)
        logger.info("trained %s on %d transcripts", self.model_file, len(texts))

    @property
    def sp(self):
        """The loaded ``SentencePieceProcessor``."""
        if self._sp is None:
            import sentencepiece

            if not self.model_file.is_file():
                raise FileNotFoundError(f"{self.model_file} is missing: train the ASR run first")
            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(self.model_file))
        return self._sp

    def encode_as_ids(self, text):
        """Unit ids of a transcript."""
        return self.sp.encode_as_ids(text)

    def words(self, ids):
        """Words of a decoded unit sequence, loops cut by :func:`filter_repetitions`."""
        return " ".join(filter_repetitions(self.sp.decode_ids([int(i) for i in ids]).split()))
