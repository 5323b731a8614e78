"""The stand-in BERT: a small random BERT with a WordPiece vocabulary of the corpus, in HF format.

It stands in for FinBERT in the tests and the built-in demo (``python -m topic_id.standins
build-bert``). The vocabulary comes from a deterministic WordPiece trainer
(:func:`train_wordpiece_vocab`), so the stand-in, and hence every demo result, is reproducible.
"""

import hashlib
import heapq
import json
import logging
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import torch

from corpus_tools.files import atomic_write, temporary_sibling
from data_prep.prepared import manifest_columns, read_manifest
from topic_id.models.hub import STANDIN_MARKER
from topic_id.standins import standin_settings, swap_dir

logger = logging.getLogger(__name__)

STANDIN_DESCRIPTION = "stand-in BERT (random init, demo vocab)"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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

    The folder loads with ``topic_id.models.text_encoder.TextEncoder(source=out_dir)`` like FinBERT does, and is marked as a
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
        of narrow random vectors is a lossy projection of the words (a linear classifier on the
        frozen vectors does clearly worse at 128 wide than at 768; docs/standins.md), so every row
        that reads text vectors gets them at the real encoder's size. Four layers, the fewest for which the paper's "sum of the last 4" takes transformer
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
    tmp = temporary_sibling(out_dir)
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
            "transcripts, built by `python -m topic_id.standins build-bert` for tests and the "
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
        columns = manifest_columns(path)
        if column not in columns:
            raise ValueError(f"{path} has no {column!r} column (columns: {columns})")
        texts += [row[column] for row in read_manifest(path) if (row[column] or "").strip()]
    return texts


def add_parser(commands):
    """Register ``build-bert`` (:mod:`topic_id.standins.cli`)."""
    build = commands.add_parser(
        "build-bert",
        help=f"build a {STANDIN_DESCRIPTION} from the 'words' of a prepared corpus",
        description="Build a small random BERT with a WordPiece vocabulary trained on the 'words' "
        "of train/dev/test.csv, in Hugging Face format (a stand-in for FinBERT).",
    )
    build.add_argument("--manifests", required=True, type=Path, help="folder with train/dev/test.csv")
    build.add_argument("--out", required=True, type=Path, help="model folder to write")
    build.add_argument("--hidden-size", type=int, default=768)
    build.add_argument("--num-layers", type=int, default=4)
    build.add_argument("--num-heads", type=int, default=12)
    build.add_argument("--intermediate-size", type=int, default=3072)
    build.add_argument("--vocab-size", type=int, default=2000)
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(handler=_build)


def _build(args):
    return build_standin(
        read_manifest_texts(args.manifests),
        args.out,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        intermediate_size=args.intermediate_size,
        vocab_size=args.vocab_size,
        seed=args.seed,
    )
