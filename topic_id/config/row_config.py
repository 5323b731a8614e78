"""A registry row's hyperparameters as the table gives them: resolved, nothing instantiated.

Both checks of :mod:`topic_id.config.preflight` (the models, the corpus) read the rows this way:
HyperPyYAML's own :func:`~hyperpyyaml.core.resolve_references` with the merged overrides of
:mod:`topic_id.config.overrides`, then a walk for the objects a YAML would build.
"""

from pathlib import Path

from topic_id.errors import ConfigError


def row_hparams(row, data, profile=None, extra=(), root=".", corpus=False):
    """One registry row's hyperparameters as the table gives them, references resolved, nothing built.

    Arguments
    ---------
    row : dict
        A row of :func:`topic_id.config.registry.load_registry`.
    data : str or Path
        The corpus folder (``--data_folder``; need not exist yet unless ``corpus``).
    profile : str, optional
        The table's ``--profile``.
    extra : sequence of str
        The user's extra ``--key=value`` arguments, after the row's own (a ``--profile`` there wins).
    root : str or Path
        The checkout the registry's ``hparams`` paths are relative to.
    corpus : bool
        The corpus exists: ``n_topics`` then defaults to its ``topics.txt``, as in ``train.py``
        (``text_dim`` and ``ssl_dim`` default to the widths of the models already on this
        machine either way: :func:`topic_id.config.overrides.derived_keys`).

    Returns
    -------
    dict
        The YAML tree (ruamel round-trip): plain values, and tagged mappings (``!new:...``) for the
        objects a training run would build.

    Raises
    ------
    ConfigError
        An unknown key, profile or YAML.
    """
    import ruamel.yaml
    from hyperpyyaml.core import resolve_references
    from speechbrain import parse_arguments

    from topic_id.config.overrides import resolve_overrides, split_profile

    hparams_file = Path(root) / row["hparams"]
    if not hparams_file.is_file():
        raise ConfigError(f"row {row['name']}: {hparams_file} does not exist (give --root, the checkout "
                          "the registry's hparams paths are relative to)")
    given, args = split_profile([*row["overrides"], *extra])
    profile = given or profile
    # SpeechBrain's parser, as train.py's: run options (--device, --precision) are not overrides.
    _, _, overrides = parse_arguments([str(hparams_file), f"--data_folder={data}", *args])
    overrides = resolve_overrides(hparams_file, overrides, profile, corpus=corpus)
    try:
        with open(hparams_file, encoding="utf-8") as f:
            stream = resolve_references(f, overrides)
    except ValueError as err:  # a !PLACEHOLDER left, an override of the wrong structure
        raise ConfigError(f"row {row['name']}: {hparams_file}: {err}") from None
    return ruamel.yaml.YAML().load(stream)


def _tag(node):
    return getattr(getattr(node, "tag", None), "value", None) or ""


def instances(tree, class_name, tag="new"):
    """The argument mappings of every ``!<tag>:<class_name>`` in a resolved YAML tree (each object once).

    ``tag`` is ``new`` for the objects a YAML builds, ``apply`` for the calls it makes.

    Example
    -------
    >>> import io, ruamel.yaml
    >>> tree = ruamel.yaml.YAML().load(io.StringIO("a: !new:x.Y {s: 1}\\nb: [!new:x.Y {s: 2}]"))
    >>> [dict(args) for args in instances(tree, "x.Y")]
    [{'s': 1}, {'s': 2}]
    """
    found, seen, todo = [], set(), [tree]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if _tag(node) == f"!{tag}:{class_name}" and isinstance(node, dict):
            found.append(node)
        if isinstance(node, dict):
            todo.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            todo.extend(reversed(node))
    # References resolve to copies: one object per distinct argument set.
    unique = {}
    for args in found:
        unique.setdefault(repr(sorted((str(k), repr(v)) for k, v in args.items())), args)
    return list(unique.values())
