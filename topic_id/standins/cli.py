"""``python -m topic_id.standins COMMAND``: build the encoder stand-ins, pretrain a wav2vec2.

Subcommands (each module registers its own with ``add_parser(commands)``):

- ``build-bert --manifests DATA --out DIR [sizes]`` (:mod:`topic_id.standins.bert`);
- ``build-wav2vec2 --out DIR [sizes]`` (:mod:`topic_id.standins.wav2vec2`);
- ``pretrain-wav2vec2 --manifests DATA --init|--from-scratch-like SRC --out DIR``
  (:mod:`topic_id.standins.pretrain`).

Each prints the model folder it wrote (or found up to date) on stdout, progress on stderr. A
problem the user can fix (a missing manifest, a bad setting, an unavailable source model) ends
with one line ``error: ...`` and exit status 2, without a traceback.
"""

import argparse
import logging
import sys

from topic_id.standins import bert, pretrain, wav2vec2
from topic_id.standins.pretrain_data import PretrainError


def build_parser():
    """The parser of ``python -m topic_id.standins`` with its three subcommands.

    Example
    -------
    >>> args = build_parser().parse_args(["build-wav2vec2", "--out", "w2v"])
    >>> args.command, args.hidden_size, args.num_layers
    ('build-wav2vec2', 64, 2)
    """
    parser = argparse.ArgumentParser(prog="python -m topic_id.standins",
                                     description=__doc__.split("\n")[0].split(": ", 1)[1])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bert.add_parser(commands)
    wav2vec2.add_parser(commands)
    pretrain.add_parser(commands)
    return parser


def main(argv=None):
    """Run ``python -m topic_id.standins``; returns 0, or exits 2 with one ``error:`` line.

    Arguments
    ---------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        out = args.handler(args)
    except (PretrainError, OSError, ValueError) as err:
        parser.exit(2, "error: " + " ".join(str(err).split()) + "\n")
    print(out)
    return 0
