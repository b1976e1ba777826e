"""Emerging topics: what customers say that no configured intent covers, grouped and named.

Why HDBSCAN (scikit-learn's): the number of new topics is unknown and most uncovered
utterances belong to none (chit-chat, one-offs). A density clustering that leaves those as
noise, instead of forcing every utterance into some cluster as k-means would, gives a lead a
short list of real groups. The utterances are the sentence encoder's L2-normalised vectors,
so euclidean distance orders pairs as cosine distance does.

Why c-TF-IDF names: each cluster's utterances are joined into one document and weighted
against the other clusters (BERTopic's class-based TF-IDF), so a topic is named by the words
that set it apart ("card arrived", "exchange rate"), not by words every call shares.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# words a name made of them would say nothing with, on top of scikit-learn's English list
_FILLER = frozenset(["hi", "hello", "yes", "yeah", "okay", "ok", "please", "thanks", "thank", "just", "like", "want", "need", "know", "did", "does", "don", "didn", "really", "got", "get", "can", "could", "would", "im", "ive", "id", "help"])  # fmt: skip


@dataclass(slots=True)
class Topic:
    topic_id: str  # stable for the same members: a digest of their utterance ids
    name: str
    terms: list[str]
    size: int
    examples: list[dict[str, Any]]  # the utterances nearest the cluster's centre first
    utterance_ids: list[int] = field(default_factory=list)
    calls: int = 0
    first_at: float | None = None
    last_at: float | None = None
    cohesion: float = 0.0  # mean cosine similarity of members to their centre

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PCA_ABOVE = 200  # utterances; fewer are clustered in the encoder's own 384 dimensions
PCA_DIMS = 64


def cluster_labels(embeddings: np.ndarray, *, min_cluster_size: int = 5, min_samples: int | None = None) -> np.ndarray:
    """One label per row, -1 for noise."""
    from sklearn.cluster import HDBSCAN

    n = len(embeddings)
    if n < max(2, min_cluster_size):
        return np.full(n, -1, dtype=int)
    x = (embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)).astype(np.float64)
    if n > PCA_ABOVE:
        # HDBSCAN's neighbour search is quadratic in 384 dimensions (4.7 s for 3000 utterances
        # on one core); 64 principal components keep the topics (Banking77 purity 0.76 against
        # 0.78, coverage 0.73 against 0.57) at a fifth of the time (bench/RESULTS.md)
        from sklearn.decomposition import PCA

        x = PCA(PCA_DIMS, random_state=0).fit_transform(x)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    ms = min_samples or min_cluster_size
    # leaf selection: the fine, dense groups (on Banking77 with 10 intents held out, purity 0.76
    # against 0.08 for excess-of-mass, which merges everything into one cluster there)
    labels = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=ms, metric="euclidean",
                     cluster_selection_method="leaf", copy=True).fit_predict(x)  # fmt: skip
    if (labels == -1).all():
        # leaf selection never returns the whole set as one cluster: a quiet period whose
        # uncovered utterances are one topic is found by excess-of-mass allowed a single cluster
        labels = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=ms, metric="euclidean",
                         cluster_selection_method="eom", allow_single_cluster=True, copy=True).fit_predict(x)  # fmt: skip
    return np.asarray(labels, dtype=int)


def distinctive_terms(docs: list[str], top: int = 4) -> list[list[str]]:
    """c-TF-IDF: per document (one per cluster) the terms weighted highest against the others."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

    if not docs:
        return []
    stop = sorted(ENGLISH_STOP_WORDS | _FILLER)
    vec = TfidfVectorizer(ngram_range=(1, 2), stop_words=stop, sublinear_tf=True, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    try:
        m = vec.fit_transform(docs)
    except ValueError:  # nothing but stop words
        return [[] for _ in docs]
    vocab = np.array(vec.get_feature_names_out())
    out = []
    for i in range(m.shape[0]):
        row = m.getrow(i).toarray().ravel()
        order = [j for j in np.argsort(-row) if row[j] > 0]
        terms: list[str] = []
        for j in order:
            t = str(vocab[j])
            words = t.split()
            if len(words) == 1 and any(t in k.split() for k in terms):
                continue  # already said by a kept bigram
            if len(words) > 1:  # a bigram says more than its words on their own
                terms = [k for k in terms if k not in words]
            terms.append(t)
            if len(terms) >= top:
                break
        out.append(terms[:top])
    return out


def discover(utterances: list[dict[str, Any]], embeddings: np.ndarray, *, min_cluster_size: int = 5,
             max_topics: int = 30, examples: int = 5) -> list[Topic]:  # fmt: skip
    """Topics among `utterances` (dicts with id, text, call_id, ts), largest first."""
    if len(utterances) != len(embeddings):
        raise ValueError("one embedding per utterance")
    labels = cluster_labels(embeddings, min_cluster_size=min_cluster_size)
    groups = [np.flatnonzero(labels == k) for k in sorted(set(labels.tolist()) - {-1})]
    if not groups:
        return []
    x = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    names = distinctive_terms([" ".join(utterances[i]["text"] for i in g) for g in groups])
    topics = []
    for g, terms in zip(groups, names, strict=True):
        centre = x[g].mean(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        sims = x[g] @ centre
        order = g[np.argsort(-sims)]
        ids = sorted(int(utterances[i]["id"]) for i in g)
        ts = [float(utterances[i]["ts"]) for i in g if utterances[i].get("ts") is not None]
        topics.append(Topic(
            topic_id=hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:12],
            name=" / ".join(terms[:3]) or _fallback_name([utterances[i]["text"] for i in g]),
            terms=terms, size=len(g),
            examples=[{k: utterances[i].get(k) for k in ("id", "text", "call_id", "ts")} for i in order[:examples]],
            utterance_ids=ids, calls=len({utterances[i].get("call_id") for i in g}),
            first_at=min(ts) if ts else None, last_at=max(ts) if ts else None, cohesion=round(float(sims.mean()), 3),
        ))  # fmt: skip
    topics.sort(key=lambda t: (-t.size, -t.cohesion))
    return topics[:max_topics]


def _fallback_name(texts: list[str]) -> str:
    words = Counter(w for t in texts for w in t.lower().split() if len(w) > 3)
    return " / ".join(w for w, _ in words.most_common(3)) or "unnamed"


def purity_coverage(labels: np.ndarray, gold: list[str], held_out: set[str]) -> dict[str, Any]:
    """How well clusters recover intents the configuration did not have.

    purity: per cluster, the share of its members carrying its majority label, weighted by size;
    coverage: the share of held-out-intent utterances inside a cluster whose majority is their
    own intent; discovered: held-out intents that are the majority of at least one cluster.
    """
    clusters = sorted(set(labels.tolist()) - {-1})
    sizes, right, majority_of = 0, 0, {}
    for k in clusters:
        members = [gold[i] for i in np.flatnonzero(labels == k)]
        label, count = Counter(members).most_common(1)[0]
        sizes += len(members)
        right += count
        majority_of[k] = label
    held = [i for i, g in enumerate(gold) if g in held_out]
    covered = sum(1 for i in held if labels[i] != -1 and majority_of.get(int(labels[i])) == gold[i])
    discovered = {v for v in majority_of.values() if v in held_out}
    return {"clusters": len(clusters), "clustered": sizes, "utterances": len(gold),
            "purity": round(right / sizes, 3) if sizes else None,
            "coverage": round(covered / len(held), 3) if held else None,
            "held_out_intents": len(held_out), "discovered_intents": len(discovered)}  # fmt: skip
