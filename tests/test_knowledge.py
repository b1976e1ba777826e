"""Knowledge assist: articles into versions, retrieval in the conversation's topic, the show
decision, and a card's life as an event (audited with its KB version, stored, replayed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from callcue.audit.log import AuditLog
from callcue.config import REPO_CONFIG_DIR
from callcue.knowledge.gate import Gate, seeks_knowledge
from callcue.knowledge.index import Filters, KnowledgeIndex
from callcue.knowledge.passages import KnowledgeImportError, Passage, read_html, read_markdown, read_path
from callcue.knowledge.store import KnowledgeError, KnowledgeStore
from callcue.knowledge.topics import EntityNames, Topic
from callcue.store.db import Database
from callcue.understand.encoder import SentenceEncoder

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "knowledge"


@pytest.fixture(scope="module")
def embed():
    return SentenceEncoder.load().embed


# ------------------------------------------------------------------ reading articles

def test_markdown_front_matter_sections_and_passages() -> None:
    ps = read_markdown("---\ntitle: Fees\nproduct: accounts\nurl: https://kb/fees\nvalid_to: 2030-01-01\nowner: ops\n---\n"
                       "Intro words.\n\n## Monthly\n\nIt costs **12 dollars**, see [the table](https://x).\n\n"
                       "## Overdraft\n\n25 dollars per item.\n", "fees.md")
    assert [(p.section, p.text) for p in ps] == [("", "Intro words."), ("Monthly", "It costs 12 dollars, see the table."),
                                                 ("Overdraft", "25 dollars per item.")]
    assert {p.title for p in ps} == {"Fees"} and ps[1].url == "https://kb/fees" and ps[1].passage_id == "fees.md#1"
    assert ps[0].meta["product"] == "accounts" and ps[0].meta["valid_to"] == "2030-01-01" and ps[0].meta["extra"] == {"owner": "ops"}


def test_html_headings_lists_and_meta_tags() -> None:
    ps = read_html("<html><head><title>T</title><meta name='product' content='cards'><script>x()</script></head><body>"
                   "<nav>menu</nav><h1>Lost cards</h1><h2>Freeze</h2><p>Freeze it now.</p><ul><li>In the app</li></ul>"
                   "<h2>Replace</h2><p>3 to 5 days.</p></body></html>", "lost.html")
    assert [(p.title, p.section, p.text) for p in ps] == [("Lost cards", "Freeze", "Freeze it now. In the app"),
                                                         ("Lost cards", "Replace", "3 to 5 days.")]
    assert ps[0].meta == {"product": "cards"}


def test_bad_input_is_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"passage_id": "x", "text": "ok"}\nnot json\n')
    with pytest.raises(KnowledgeImportError, match="line 2: not JSON"):
        read_path(tmp_path / "a.jsonl")
    (tmp_path / "a.jsonl").write_text('{"passage_id": "x", "text": "ok"}\n{"passage_id": "x", "text": "again"}\n')
    with pytest.raises(KnowledgeImportError, match="appears twice"):
        read_path(tmp_path / "a.jsonl")
    with pytest.raises(KnowledgeImportError, match="no .md, .html or .jsonl"):
        read_path(tmp_path / "nothing" if (tmp_path / "nothing").mkdir() is None else tmp_path)
    (tmp_path / "b.md").write_text("---\n- a list\n---\ntext\n")
    with pytest.raises(KnowledgeImportError, match="front matter must be a mapping"):
        read_path(tmp_path / "b.md")


def test_the_shipped_demo_kb_reads() -> None:
    ps = read_path(REPO_CONFIG_DIR / "knowledge")
    titles = {p.title for p in ps}
    assert {"Closing an account and retention offers", "Lost or stolen cards", "Disputed and double charges, and refunds",
            "Account and card fees", "Complaints and speaking to a manager", "Paying by card securely over the phone",
            "Opening hours and how to reach us"} <= titles
    assert all(p.url.startswith("https://") and p.text for p in ps)


# ------------------------------------------------------------------ versions

async def test_versions_import_diff_promote_rollback_audited(tmp_path: Path, embed) -> None:
    db = await Database.connect(f"sqlite:///{tmp_path}/kb.db")
    audit = AuditLog(db)
    store = await KnowledgeStore(db, audit).init()
    one = [Passage("a#0", "a", "A", "first text"), Passage("b#0", "b", "B", "second text")]
    v1 = await store.add_version(one, embed([p.text for p in one]), actor="qa-lead", source="t")
    assert v1 is not None and v1.version == 1 and await store.active_version() is None
    assert await store.add_version(one, embed([p.text for p in one]), actor="qa-lead", source="t") is None  # unchanged
    two = [Passage("a#0", "a", "A", "first text, edited"), Passage("c#0", "c", "C", "third")]
    v2 = await store.add_version(two, embed([p.text for p in two]), actor="qa-lead", source="t")
    d = await store.diff(1, 2)
    assert d["added"] == ["c#0"] and d["removed"] == ["b#0"] and [c["passage_id"] for c in d["changed"]] == ["a#0"]
    await store.promote(1, actor="qa-lead")
    await store.promote(v2.version, actor="qa-lead")
    assert await store.rollback(actor="qa-lead") == 1 and await store.active_version() == 1
    loaded = await store.load(1)
    assert [p.passage_id for p in loaded.passages] == ["a#0", "b#0"] and loaded.vectors.shape == (2, 384)
    assert np.allclose(loaded.vectors[0], embed(["first text"])[0], atol=2e-3)  # stored as float16
    with pytest.raises(KnowledgeError, match="no KB version 9"):
        await store.promote(9, actor="x")
    kinds = [e.kind for e in await audit.query(limit=100)]
    assert kinds.count("kb_version_created") == 2 and kinds.count("kb_version_promoted") == 3
    assert (await audit.verify()).ok
    await db.close()


# ------------------------------------------------------------------ retrieval and the show decision

def _index(embed) -> KnowledgeIndex:
    ps = [Passage("h1#0", "h1", "Lovell Lodge", "Pets are not allowed at Lovell Lodge.", meta={"entity": "Lovell Lodge"}),
          Passage("h1#1", "h1", "Lovell Lodge", "Parking is free for guests.", meta={"entity": "Lovell Lodge"}),
          Passage("h2#0", "h2", "Ashley Hotel", "Dogs and cats are welcome at the Ashley Hotel.", meta={"entity": "Ashley Hotel"}),
          Passage("h2#1", "h2", "Ashley Hotel", "Parking costs 10 pounds a night.", meta={"entity": "Ashley Hotel"}),
          Passage("x#0", "x", "Fees", "The monthly fee is 12 dollars.", meta={"product": "accounts", "valid_to": "2001-01-01"})]
    return KnowledgeIndex.build(ps, embed, version=3)


def test_the_conversation_decides_which_entity_a_question_is_about(embed) -> None:
    idx = _index(embed)
    t = idx.topic(["I'd like to stay at the Ashley hotel", "Sure, the Ashley Hotel has rooms.", "Can I bring my dog?"])
    assert t.focus()[0][0] == "Ashley Hotel"
    assert idx.search("Can I bring my dog?", topic=t, k=1)[0].passage.passage_id == "h2#0"
    later = idx.topic(["I'd like to stay at the Ashley hotel", "what about the lovell lodge instead", "Can I bring my dog?"])
    assert later.focus()[0][0] == "Lovell Lodge"  # the latest named
    assert set(idx.names.mentions("what about the lovel lodg")) == {"Lovell Lodge"}  # heard through errors
    hit = idx.search("Can I bring my dog?", topic=later, k=1)[0]
    assert hit.passage.passage_id == "h1#0" and "about Lovell Lodge" in hit.why
    assert [h.passage.passage_id for h in idx.search("is parking free", topic=later, k=2)] == ["h1#1", "h1#0"]


def test_filters_and_validity_dates(embed) -> None:
    idx = _index(embed)
    assert all(h.passage.passage_id != "x#0" for h in idx.search("monthly fee", k=5))  # expired in 2001
    assert Filters(product="cards").allows(Passage("p", "d", "t", "x", meta={"product": "accounts"})) is False
    assert Filters(product="cards").allows(Passage("p", "d", "t", "x")) is True


def test_the_gate_asks_for_questions_not_statements() -> None:
    for q in ("Is there a fee if I close my account?", "uh do you know if they allow pets", "how long does a new card take",
              "Can I still get a refund after thirty days?"):
        assert seeks_knowledge(q) >= 0.5, q
    for s in ("Thank you.", "Hi Daniel.", "I have been a customer for ten years.", "Try a different area."):
        assert seeks_knowledge(s) < 0.5, s
    g = Gate(min_score=0.5)
    assert g.show("Is parking free?", 0.7) and not g.show("Is parking free?", 0.4) and not g.show("Great, thanks.", 0.9)


def test_entity_names_match_short_forms() -> None:
    names = EntityNames(["The Gonville Hotel", "A and B Guest House"])
    assert set(names.mentions("is the gonville nice")) == {"The Gonville Hotel"}
    assert set(names.mentions("I booked a & b guest house")) == {"A and B Guest House"}
    t = Topic(names)
    t.hear("the gonville hotel please")
    for _ in range(3):
        t.hear("ok")
    assert 0 < t.weights["The Gonville Hotel"] < 1


# ------------------------------------------------------------------ a card's life as an event

async def test_a_card_is_audited_with_its_kb_version_stored_and_replayed(tmp_path: Path) -> None:
    from test_structure import _drain, _runtime, final

    from callcue.egress.hub import Principal, Subscriber
    from callcue.egress.replay import replay
    from callcue.platforms.base import CallStart

    rt, sub = await _runtime(tmp_path)
    try:
        assert rt.knowledge is not None and rt.knowledge.index is not None
        call = await rt.calls.start(CallStart("kb-1", "PCMU", 8000, ("customer", "agent"), agent_id="agent-1"))
        await call.pipeline.push(final("kb-1", "How long does a replacement card take to arrive?", 1, 1.0))
        await call.pipeline.push(final("kb-1", "How long does a replacement card take to arrive?", 2, 6.0))  # not twice
        await rt.calls.stop("kb-1")
        await rt.store.flush()
        cards = [e for e in _drain(sub) if e.get("type") == "hint" and e["attrs"].get("card") == "knowledge"]
        assert len(cards) == 1, cards
        card = cards[0]
        a = card["attrs"]
        assert card["title"] == "Lost or stolen cards" and a["section"] == "Replacement card"
        assert "3 to 5 business days" in card["suggested_reply"] and card["body"][a["span"][0]:a["span"][1]].strip() == card["suggested_reply"]
        assert a["kb_version"] == rt.knowledge.index.version and a["url"].startswith("https://") and "replacement" in a["why"]
        entries = {e.kind: e for e in await rt.audit.query(call_id="kb-1", limit=500)}
        shown = entries["hint_shown"].payload
        assert (shown["hint_id"], shown["kb_version"], shown["passage_id"], shown["card"]) == (
            card["hint_id"], a["kb_version"], a["passage_id"], "knowledge")
        record = await rt.access.call_record("kb-1")
        assert [h["hint_id"] for h in record["hints"] if h["hint_id"] == card["hint_id"]]
        # a desktop joining after the call ended is replayed the card, numbered, from the store
        late = Subscriber(Principal("agent-1", "agent"), queue_size=1000)
        assert await replay(late, "kb-1", 0, rt.access.read_events) > 0
        replayed = [late.queue.get_nowait() for _ in range(late.queue.qsize())]
        [again] = [e for e in replayed if e.get("hint_id") == card["hint_id"]]
        assert again["seq"] == card["seq"] and again["attrs"]["passage_id"] == a["passage_id"]
        report = await rt.supervisor.run("kb_report", _Sup(), {})
        assert report["articles"][0]["passage_id"] == a["passage_id"] and report["articles"][0]["shown"] == 1
    finally:
        await rt.close()


class _Sup:
    user_id, role = "supervisor-1", "supervisor"


# ------------------------------------------------------------------ the evaluation command

@pytest.mark.skipif(not (SHARED / "dstc11_track5" / "kb.jsonl").exists(), reason="../shared/data/knowledge is not here")
def test_eval_knowledge_prints_its_table(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (SHARED / "dstc11_track5" / "dev.jsonl").read_text().splitlines()[:120]]
    ents = {g for r in rows for g in r["gold_entities"]}
    kb = [line for line in (SHARED / "dstc11_track5" / "kb.jsonl").read_text().splitlines()
          if "{}:{}".format(*json.loads(line)["passage_id"].split(":")[:2]) in ents]
    (tmp_path / "kb.jsonl").write_text("\n".join(kb) + "\n")
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    env = {**os.environ, "CALLCUE_MODELS_DIR": str(tmp_path / "models")}
    out = subprocess.run([sys.executable, "-m", "callcue.cli", "eval", "knowledge", "--kb", str(tmp_path / "kb.jsonl"),
                          "--queries", str(tmp_path / "q.jsonl"), "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "hit@1" in out.stdout and "BM25 reference" in out.stdout
    res = json.loads((tmp_path / "r.json").read_text())
    plain = res["plain"]
    assert plain["n"] == sum(r["knowledge_seeking"] for r in rows)
    assert plain["hit@5"] > res["bm25_reference"]["hit@5"] and plain["hit@1"] >= 0.4
    bad = subprocess.run([sys.executable, "-m", "callcue.cli", "eval", "knowledge", "--kb", str(tmp_path / "nope.jsonl"),
                          "--queries", str(tmp_path / "q.jsonl")], capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert bad.returncode == 2 and "does not exist" in bad.stderr
