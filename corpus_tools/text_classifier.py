"""The bag-of-words text classifier: word counts or TF-IDF -> logistic regression (scikit-learn).

One definition serves both packages: the bag-of-words rows of Table I train it
(:mod:`topic_id.models.bow`), and a corpus preparation scores the corpus's transcripts with it to
say how much the words alone give away (``bow_logreg`` of a built-in corpus's ``summary.json``).
"""

VECTORIZERS = ("counts", "tfidf")


def build_model(vectorizer="counts", ngram_range=(1, 1), min_df=1, C=1.0, max_iter=2000):
    """An unfitted scikit-learn pipeline: vectorizer -> multinomial logistic regression.

    Arguments
    ---------
    vectorizer : str
        ``counts`` (``CountVectorizer``) or ``tfidf`` (``TfidfVectorizer``).
    ngram_range : sequence of two int
        Smallest and largest word n-gram.
    min_df : int or float
        Words in fewer training texts (an int) or a smaller share of them (a float) are dropped.
    C : float
        Inverse strength of the logistic regression's L2 penalty.
    max_iter : int
        L-BFGS iterations at most.

    Returns
    -------
    sklearn.pipeline.Pipeline

    Example
    -------
    >>> build_model("tfidf", [1, 2]).steps[0][1].ngram_range
    (1, 2)
    """
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if vectorizer not in VECTORIZERS:
        raise ValueError(f"vectorizer must be one of {VECTORIZERS}, not {vectorizer!r}")
    low, high = (int(n) for n in ngram_range)
    kind = CountVectorizer if vectorizer == "counts" else TfidfVectorizer
    return Pipeline([("vectorizer", kind(ngram_range=(low, high), min_df=min_df)),
                     ("logreg", LogisticRegression(C=float(C), max_iter=int(max_iter)))])


def fit_model(texts, topics, **options):
    """Fit :func:`build_model` on texts and their topics.

    Arguments
    ---------
    texts : sequence of str
        Training texts (non-empty).
    topics : sequence of str
        Their topics; at least two different ones.
    **options
        Keyword arguments of :func:`build_model`.

    Returns
    -------
    sklearn.pipeline.Pipeline
        The fitted model.

    Example
    -------
    >>> model = fit_model(["kissa koira", "koira kissa", "auto tie", "tie auto"], list("aabb"))
    >>> model.predict(["kissa", "auto"]).tolist()
    ['a', 'b']
    """
    if len(set(topics)) < 2:
        raise ValueError(f"a bag-of-words model needs at least two topics to learn, got "
                         f"{sorted(set(topics))}")
    model = build_model(**options)
    try:
        model.fit(list(texts), list(topics))
    except ValueError as err:
        if "empty vocabulary" not in str(err):
            raise
        raise ValueError(f"the training texts hold no word the vectorizer keeps ({err})") from None
    return model
