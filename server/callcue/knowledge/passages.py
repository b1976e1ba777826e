"""Articles in, passages out: Markdown, HTML and JSONL passages read into one shape.

Why passages, not articles: the agent needs the paragraph that answers, not a page to read
while the customer waits; a passage keeps the article's title and the section it sits in,
so the card can say where it comes from and retrieval can match on the headings too.

Metadata (product, queue, language, valid_from, valid_to, url) comes from a Markdown file's
front matter (YAML between `---` lines), an HTML page's `<meta name=...>` tags, or a JSONL
row's own fields, and filters what a call may be shown.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from bs4 import BeautifulSoup
from markdown_it import MarkdownIt

#: metadata keys a passage may carry; everything else in front matter is kept under `extra`
META_KEYS = ("product", "queue", "language", "valid_from", "valid_to", "url", "entity")
#: a section's paragraphs are grouped into passages of about this many words
PASSAGE_WORDS = 90
SUFFIXES = (".md", ".markdown", ".html", ".htm", ".jsonl")


class KnowledgeImportError(ValueError):
    """A file that cannot be read as articles, with the file and the reason."""


@dataclass(frozen=True)
class Passage:
    passage_id: str
    doc_id: str
    title: str
    text: str
    section: str = ""
    url: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def entity(self) -> str:
        """What the passage is about when the KB says (a product, a hotel): the topic tracker's key."""
        return str(self.meta.get("entity") or "")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()

    def valid_on(self, day: date) -> bool:
        lo, hi = _day(self.meta.get("valid_from")), _day(self.meta.get("valid_to"))
        return (lo is None or lo <= day) and (hi is None or day <= hi)


def _day(v: Any) -> date | None:
    if v in (None, ""):
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    try:
        return date.fromisoformat(str(v)[:10])
    except ValueError:
        return None


def read_path(path: Path) -> list[Passage]:
    """Every passage of a file or of the article files under a folder (sorted, so an import
    of the same folder is the same version)."""
    if not path.exists():
        raise KnowledgeImportError(f"{path}: no such file or folder")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES)
    if not files:
        raise KnowledgeImportError(f"{path}: no .md, .html or .jsonl files")
    out: list[Passage] = []
    for f in files:
        rel = f.name if path.is_file() else f.relative_to(path).as_posix()
        out.extend(read_file(f, rel))
    seen: set[str] = set()
    for p in out:
        if p.passage_id in seen:
            raise KnowledgeImportError(f"passage id {p.passage_id!r} appears twice")
        seen.add(p.passage_id)
    return out


def read_file(f: Path, doc_id: str) -> list[Passage]:
    try:
        raw = f.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise KnowledgeImportError(f"{f}: {e}") from None
    suffix = f.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(raw, f.name)
    if suffix in (".html", ".htm"):
        return read_html(raw, doc_id)
    return read_markdown(raw, doc_id)


# ------------------------------------------------------------------ JSONL (the shared format)

def read_jsonl(raw: str, name: str) -> list[Passage]:
    """Rows with `passage_id` and `text`; `doc_id`, `title` (or `entity_name`), `section`,
    `url` and the metadata keys are optional."""
    out = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise KnowledgeImportError(f"{name} line {n}: not JSON ({e})") from None
        if not isinstance(row, dict) or not isinstance(row.get("passage_id"), str) or not str(row.get("text") or "").strip():
            raise KnowledgeImportError(f"{name} line {n}: a passage needs a string passage_id and a text")
        meta = {k: row[k] for k in META_KEYS if row.get(k) not in (None, "")}
        if row.get("entity_name") and "entity" not in meta:
            meta["entity"] = str(row["entity_name"])
        for k in ("domain", "doc_type", "question", "answer"):
            if row.get(k):
                meta[k] = row[k]
        title = str(row.get("title") or row.get("entity_name") or row.get("doc_id") or row["passage_id"])
        out.append(Passage(row["passage_id"], str(row.get("doc_id") or row["passage_id"]), title,
                           " ".join(str(row["text"]).split()), str(row.get("section") or ""), str(row.get("url") or ""),
                           meta))  # fmt: skip
    return out


# ------------------------------------------------------------------ Markdown

_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


def read_markdown(raw: str, doc_id: str) -> list[Passage]:
    meta: dict[str, Any] = {}
    m = _FRONT.match(raw)
    if m:
        try:
            loaded = yaml.safe_load(m.group(1)) or {}
        except yaml.YAMLError as e:
            raise KnowledgeImportError(f"{doc_id}: front matter is not YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise KnowledgeImportError(f"{doc_id}: front matter must be a mapping")
        meta = loaded
        raw = raw[m.end():]
    tokens = MarkdownIt("commonmark").parse(raw)
    title = str(meta.pop("title", "") or "")
    blocks: list[tuple[str, str]] = []  # (section, paragraph)
    section = ""
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.type == "heading_open":
            text = tokens[i + 1].content.strip()
            if t.tag == "h1" and not title:
                title = text
            else:
                section = text
            i += 3
            continue
        if t.type == "inline" and tokens[i - 1].type == "paragraph_open":
            blocks.append((section, _plain(t.content)))
        i += 1
    return _passages(doc_id, title or Path(doc_id).stem.replace("-", " ").replace("_", " "), blocks, meta)


def _plain(md_inline: str) -> str:
    """Inline Markdown to plain text: links keep their words, emphasis marks go."""
    s = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", md_inline)
    s = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", s)
    s = re.sub(r"[*_`]{1,3}", "", s)
    return " ".join(s.split())


# ------------------------------------------------------------------ HTML

def read_html(raw: str, doc_id: str) -> list[Passage]:
    soup = BeautifulSoup(raw, "html.parser")
    for bad in soup(["script", "style", "nav", "footer"]):
        bad.decompose()
    meta: dict[str, Any] = {}
    for tag in soup.find_all("meta"):
        name, content = tag.get("name"), tag.get("content")
        if isinstance(name, str) and isinstance(content, str) and name in META_KEYS:
            meta[name] = content
    h1 = soup.find("h1")
    title = (h1.get_text(" ", strip=True) if h1 else "") or (soup.title.get_text(strip=True) if soup.title else "")
    blocks: list[tuple[str, str]] = []
    section = ""
    for el in soup.find_all(["h2", "h3", "h4", "p", "li"]):
        text = " ".join(el.get_text(" ", strip=True).split())
        if not text:
            continue
        if el.name in ("h2", "h3", "h4"):
            section = text
        elif el.name == "p" or el.find_parent(["ul", "ol"]) is not None:
            blocks.append((section, text))
    return _passages(doc_id, title or Path(doc_id).stem, blocks, meta)


def _passages(doc_id: str, title: str, blocks: list[tuple[str, str]], meta: dict[str, Any]) -> list[Passage]:
    """Paragraphs of one section grouped up to about PASSAGE_WORDS words each."""
    keep = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in meta.items() if k in META_KEYS}
    extra = {k: v for k, v in meta.items() if k not in META_KEYS}
    if extra:
        keep["extra"] = extra
    url = str(keep.pop("url", "") or "")
    out: list[Passage] = []
    cur: list[str] = []
    cur_section = None

    def flush() -> None:
        if cur:
            n = len(out)
            out.append(Passage(f"{doc_id}#{n}", doc_id, title, " ".join(cur), cur_section or "", url, dict(keep)))
            cur.clear()

    for section, para in blocks:
        if section != cur_section or sum(len(c.split()) for c in cur) + len(para.split()) > PASSAGE_WORDS:
            flush()
            cur_section = section
        cur.append(para)
    flush()
    return out
