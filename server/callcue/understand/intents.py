"""Intent definitions (YAML) and the few-shot intent classifier with out-of-scope detection.

Why this design:
- Features are the MiniLM sentence embedding (meaning, robust to paraphrase) concatenated with
  TF-IDF word 1-2-grams and char 2-5-grams (exact domain words such as "chargeback", "PIN",
  "top-up" that a small general encoder blurs). One logistic regression on top. On a held-out
  split of Banking77 this beats either feature set alone (see docs/understanding.md).
- Confidence is the softmax of temperature-scaled logits; the temperature is fitted on
  out-of-fold predictions, so "0.8" means roughly "right 8 times in 10" rather than whatever the
  regulariser happened to produce.
- "None of these" is decided two ways, both needed in a contact centre where most turns are not
  an intent at all: an explicit out-of-scope class trained on negative examples (greetings,
  account numbers, small talk), and a threshold on the calibrated confidence.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from callcue.understand.encoder import SentenceEncoder

OOS = "none"  # the label for "none of these"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


# ---------------------------------------------------------------------------------------------
# configuration


class IntentConfigError(ValueError):
    """The intents file is unreadable or invalid; the message names the offending key."""


class IntentDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = Field(min_length=3)
    examples: list[str] = Field(min_length=3)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"must be snake_case ([a-z][a-z0-9_]*), got {v!r}")
        if v == OOS:
            raise ValueError(f"{OOS!r} is reserved for out-of-scope")
        return v

    @field_validator("examples")
    @classmethod
    def _examples(cls, v: list[str]) -> list[str]:
        cleaned = [e.strip() for e in v]
        for i, e in enumerate(cleaned):
            if not e:
                raise ValueError(f"example {i} is empty")
        dup = [e for e, n in Counter(e.lower() for e in cleaned).items() if n > 1]
        if dup:
            raise ValueError(f"duplicate examples: {dup}")
        return cleaned


class OutOfScopeDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # calibrated confidence below this means "none of these"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    # turns that are NOT any intent; trained as their own class
    examples: list[str] = Field(default_factory=list)


class DetectorDef(BaseModel):
    """Debouncing of partial transcripts (see intent_detector.py)."""

    model_config = ConfigDict(extra="forbid")

    min_words: int = Field(default=3, ge=1)
    stable_updates: int = Field(default=2, ge=1)
    partial_confidence: float = Field(default=0.6, ge=0.0, le=1.0)
    high_confidence: float = Field(default=0.85, ge=0.0, le=1.0)
    final_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    channels: list[str] = Field(default_factory=lambda: ["customer"])


class IntentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    intents: list[IntentDef] = Field(min_length=2)
    out_of_scope: OutOfScopeDef = Field(default_factory=OutOfScopeDef)
    detector: DetectorDef = Field(default_factory=DetectorDef)

    @model_validator(mode="after")
    def _unique(self) -> IntentConfig:
        names = [i.name for i in self.intents]
        dup = [n for n, c in Counter(names).items() if c > 1]
        if dup:
            raise ValueError(f"duplicate intent names: {dup}")
        return self

    @property
    def enabled(self) -> list[IntentDef]:
        return [i for i in self.intents if i.enabled]


def _loc(loc: tuple[Any, ...], data: Any) -> str:
    """'intents[3] (refund).examples' — a path a person can find in the file."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            try:
                node = node[part]
                if isinstance(node, dict) and "name" in node:
                    out += f" ({node['name']})"
            except (IndexError, KeyError, TypeError):
                node = None
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "<root>"


def parse_intents(data: Any, source: str = "<data>") -> IntentConfig:
    try:
        return IntentConfig.model_validate(data)
    except ValidationError as e:
        msgs = [f"{_loc(err['loc'], data)}: {err['msg']}" for err in e.errors()]
        raise IntentConfigError(f"{source}: invalid intents config: " + "; ".join(msgs)) from None


def load_intents(path: str | Path) -> IntentConfig:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntentConfigError(f"{p}: intents file not found") from None
    except RecursionError:
        raise IntentConfigError(f"{p}: not valid YAML: nested too deeply") from None
    except (yaml.YAMLError, ValueError, TypeError) as e:
        raise IntentConfigError(f"{p}: not valid YAML: {e}") from None
    return parse_intents(data, str(p))


def default_config_path() -> Path:
    """config/intents.yaml at the repository root (the package lives in server/callcue)."""
    return Path(__file__).resolve().parents[3] / "config" / "intents.yaml"


# ---------------------------------------------------------------------------------------------
# classifier


@dataclass(slots=True)
class IntentPrediction:
    intent: str  # OOS ("none") when nothing fits
    confidence: float  # calibrated probability of `intent` (of OOS when out of scope)
    top: list[tuple[str, float]] = field(default_factory=list)  # best in-scope candidates

    @property
    def in_scope(self) -> bool:
        return self.intent != OOS


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising the NLL of held-out logits (Guo et al. 2017)."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        return float((lse - z[np.arange(len(y)), y]).mean())

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(math.exp(res.x))


class IntentClassifier:
    """Embedding + TF-IDF logistic regression with calibrated confidence and out-of-scope.

    Fit once (milliseconds for a config of a few dozen examples, tens of seconds for the full
    Banking77), then `predict` is thread-safe: it only reads fitted state.
    """

    def __init__(
        self,
        encoder: SentenceEncoder | None = None,
        *,
        embed_weight: float = 2.0,
        C: float = 10.0,
        use_tfidf: bool = True,
        oos_threshold: float = 0.0,
        calibrate: bool = True,
        seed: int = 0,
    ) -> None:
        if embed_weight <= 0 or C <= 0:
            raise ValueError("embed_weight and C must be positive")
        if not 0.0 <= oos_threshold <= 1.0:
            raise ValueError(f"oos_threshold must be in [0, 1], got {oos_threshold}")
        self._encoder = encoder
        self.embed_weight = embed_weight
        self.C = C
        self.use_tfidf = use_tfidf
        self.oos_threshold = oos_threshold
        self.calibrate = calibrate
        self.seed = seed
        self.temperature = 1.0
        self.classes_: np.ndarray | None = None
        self._vec: Any = None
        self._lr: Any = None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: IntentConfig,
        encoder: SentenceEncoder | None = None,
        *,
        extra_texts: list[str] | None = None,
        extra_labels: list[str] | None = None,
        **kw: Any,
    ) -> IntentClassifier:
        """Train on the config's examples (+ its description) and optional labelled data, whose
        labels may name intents beyond the config's."""
        texts: list[str] = []
        labels: list[str] = []
        for d in config.enabled:
            texts += [*d.examples, d.description]
            labels += [d.name] * (len(d.examples) + 1)
        texts += config.out_of_scope.examples
        labels += [OOS] * len(config.out_of_scope.examples)
        if extra_texts or extra_labels:
            if len(extra_texts or []) != len(extra_labels or []):
                raise ValueError("extra_texts and extra_labels differ in length")
            # a label the config does not name is an intent a dataset version added (a topic
            # made into an intent, docs/analytics.md): it is learned from its examples alone
            texts += list(extra_texts or [])
            labels += list(extra_labels or [])
        kw.setdefault("oos_threshold", config.out_of_scope.threshold)
        clf = cls(encoder, **kw)
        return clf.fit(texts, labels)

    @property
    def encoder(self) -> SentenceEncoder:
        if self._encoder is None:
            from callcue.understand.encoder import SentenceEncoder

            self._encoder = SentenceEncoder.load()
        return self._encoder

    # -- features -----------------------------------------------------------------------------

    def _new_vectorizer(self) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_union

        return make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        )

    def _features(self, vec: Any, texts: list[str], emb: np.ndarray, fit: bool) -> Any:
        import scipy.sparse as sp

        e = sp.csr_matrix(emb * self.embed_weight)
        if not self.use_tfidf:
            return e
        t = vec.fit_transform(texts) if fit else vec.transform(texts)
        return sp.hstack([e, t]).tocsr()

    def _train(self, texts: list[str], y: np.ndarray, emb: np.ndarray) -> tuple[Any, Any]:
        from sklearn.linear_model import LogisticRegression

        vec = self._new_vectorizer() if self.use_tfidf else None
        X = self._features(vec, texts, emb, fit=True)
        lr = LogisticRegression(C=self.C, max_iter=2000)
        lr.fit(X, y)
        return vec, lr

    # -- fit / predict ------------------------------------------------------------------------

    def fit(self, texts: list[str], labels: list[str], *, embeddings: np.ndarray | None = None) -> IntentClassifier:
        """Fit on labelled utterances; label OOS ("none") marks negative examples.

        `embeddings` lets an evaluation reuse vectors it already computed.
        """
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        counts = Counter(labels)
        if len([c for c in counts if c != OOS]) < 2:
            raise ValueError("need at least two intents to classify between")
        emb = self.encoder.embed(list(texts)) if embeddings is None else np.asarray(embeddings, dtype=np.float32)
        if emb.shape[0] != len(texts):
            raise ValueError(f"{emb.shape[0]} embeddings for {len(texts)} texts")
        self.classes_ = np.array(sorted(counts))
        y = np.searchsorted(self.classes_, np.array(labels))
        self.temperature = self._calibration_temperature(list(texts), y, emb) if self.calibrate else 1.0
        self._vec, self._lr = self._train(list(texts), y, emb)
        return self

    def _calibration_temperature(self, texts: list[str], y: np.ndarray, emb: np.ndarray) -> float:
        """Held-out logits -> temperature.

        Small sets (a config's few dozen examples): out-of-fold logits over 3 folds, since every
        example counts. Large sets: one stratified 15% hold-out, since the temperature is a single
        scalar and k extra fits of a 100-class model cost minutes.
        """
        from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

        min_count = int(np.bincount(y).min())
        if len(y) <= 3000:
            n_splits = min(3, min_count)  # 3 folds: one scalar needs little; start-up stays ~seconds
            if n_splits < 2:
                return 1.0
            splits = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.seed).split(emb, y)
        else:
            if min_count < 2:
                return 1.0
            splits = StratifiedShuffleSplit(n_splits=1, test_size=0.15, random_state=self.seed).split(emb, y)
        rows: list[np.ndarray] = []
        logit_rows: list[np.ndarray] = []
        for tr, te in splits:
            vec, lr = self._train([texts[i] for i in tr], y[tr], emb[tr])
            X = self._features(vec, [texts[i] for i in te], emb[te], fit=False)
            assert self.classes_ is not None
            z = np.full((len(te), len(self.classes_)), -1e4)  # classes absent from a fold: very unlikely
            d = lr.decision_function(X)
            if d.ndim == 1:
                d = np.stack([-d / 2, d / 2], axis=1)
            z[:, lr.classes_] = d
            rows.append(te)
            logit_rows.append(z)
        idx = np.concatenate(rows)
        return _fit_temperature(np.concatenate(logit_rows), y[idx])

    def predict_proba(self, texts: list[str], *, embeddings: np.ndarray | None = None) -> np.ndarray:
        """Calibrated class probabilities, columns in `classes_` order."""
        if self._lr is None or self.classes_ is None:
            raise RuntimeError("IntentClassifier is not fitted")
        emb = self.encoder.embed(list(texts)) if embeddings is None else np.asarray(embeddings, dtype=np.float32)
        X = self._features(self._vec, list(texts), emb, fit=False)
        z = self._lr.decision_function(X) / self.temperature
        if z.ndim == 1:  # binary LR returns one column
            z = np.stack([-z / 2, z / 2], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, texts: list[str], *, embeddings: np.ndarray | None = None, top_k: int = 3) -> list[IntentPrediction]:
        if len(texts) == 0:
            return []
        P = self.predict_proba(texts, embeddings=embeddings)
        assert self.classes_ is not None
        names = [str(c) for c in self.classes_]  # plain str: signals get serialised (JSON, msgpack)
        oos_col = names.index(OOS) if OOS in names else None
        out: list[IntentPrediction] = []
        for row in P:
            order = np.argsort(-row)
            top = [(names[j], float(row[j])) for j in order if j != oos_col][:top_k]
            best, conf = top[0]
            if (oos_col is not None and order[0] == oos_col) or conf < self.oos_threshold:
                p_oos = float(row[oos_col]) if oos_col is not None else 0.0
                out.append(IntentPrediction(OOS, max(p_oos, 1.0 - conf), top))
            else:
                out.append(IntentPrediction(best, conf, top))
        return out
