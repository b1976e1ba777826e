"""The composition root: the one place the application is assembled from config.

Every part gets what it needs passed in, typed; nothing reaches for a shared container.
Built in dependency order (storage, audit, learning, ASR, understanding, decisions, the one
Sink, the pipeline), closed in reverse.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callcue.analytics.service import Analytics
from callcue.analytics.store import AnalyticsStore
from callcue.asr.base import AsrEngine
from callcue.asr.faults import with_injected_faults
from callcue.asr.select import load_engine
from callcue.audit.kpis import kpis
from callcue.audit.log import AuditLog
from callcue.auth import Authenticator, FailureLimiter
from callcue.bot.demo_backend import DemoBackend
from callcue.bot.flows import load_flow_files, load_flows
from callcue.bot.versions import FlowVersions
from callcue.bot.voice import EspeakVoice, default_voice
from callcue.cluster.bus import RedisBus
from callcue.cluster.node import ClusterNode
from callcue.config import Settings
from callcue.decide.actions.dispatcher import ActionDispatcher
from callcue.decide.decider import PlaybookDecider
from callcue.decide.engine import DecisionEngine
from callcue.decide.hints import PhraseHintPolicy
from callcue.decide.playbooks import PlaybookSet
from callcue.decide.webhooks import WebhookClient
from callcue.egress.access import CallAccess
from callcue.egress.agent_ws import AgentGateway
from callcue.egress.analytics_api import AnalyticsCommands
from callcue.egress.bot_api import BotCommands
from callcue.egress.hub import Hub
from callcue.egress.knowledge_api import KnowledgeCommands
from callcue.egress.qa_api import QaCommands
from callcue.egress.supervisor_api import CommandError, SupervisorCommands
from callcue.governance.erasure import Eraser
from callcue.governance.retention import Retention
from callcue.knowledge.gate import Gate
from callcue.knowledge.service import KnowledgeBase
from callcue.knowledge.store import KnowledgeStore
from callcue.learning.store import Learning
from callcue.pipeline.deps import BotSetup, PipelineDeps
from callcue.pipeline.load import load_report
from callcue.pipeline.manager import CallManager
from callcue.pipeline.sink import Sink
from callcue.pipeline.streams import CallStreams
from callcue.privacy.envelope import KeyRing
from callcue.privacy.keys import data_dir, load_key_ring
from callcue.privacy.vault import TextVault
from callcue.qa.card import load_cards
from callcue.qa.post_call import PostCallQA
from callcue.store.calls import CallStore
from callcue.store.db import Database
from callcue.store.recordings import RecordingStore
from callcue.transports.webrtc import WebRTCSessions
from callcue.understand.replies import RepliesDetector
from callcue.understand.suite import Understanding, build_understanding, retrain_intents

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """A running server's parts. Frozen: what was assembled is what runs."""

    settings: Settings
    started_at: float
    asr_pool: ThreadPoolExecutor
    detect_pool: ThreadPoolExecutor
    db: Database
    store: CallStore
    audit: AuditLog
    learning: Learning
    hub: Hub
    sink: Sink
    auth: Authenticator
    asr: AsrEngine
    asr_note: str
    understanding: Understanding
    engine: DecisionEngine
    supervisor: SupervisorCommands
    calls: CallManager
    access: CallAccess
    agents: AgentGateway
    auth_failures: FailureLimiter
    webrtc: WebRTCSessions
    cluster: ClusterNode | None = None
    qa: PostCallQA | None = None
    analytics: Analytics | None = None
    knowledge: KnowledgeBase | None = None
    recordings: RecordingStore | None = None
    eraser: Eraser | None = None
    retention: Retention | None = None
    demo_backend: DemoBackend | None = None

    async def close(self) -> None:
        if self.retention is not None:
            await self.retention.close()
        await self.webrtc.close()
        await self.calls.shutdown()
        self.asr.close()  # decode workers: every call's last final is in by now
        if self.qa is not None:  # the calls that ended just now are scored before the store closes
            await self.qa.close()
        if self.cluster is not None:  # after the calls: their last events and leases go out first
            await self.cluster.close()
        await self.engine.close()
        await self.store.close()
        await self.db.close()
        self.asr_pool.shutdown(wait=False, cancel_futures=True)
        self.detect_pool.shutdown(wait=False, cancel_futures=True)


async def assemble(settings: Settings) -> Runtime:
    """Everything a server runs, from `settings`; on failure what was opened is closed."""
    detect_pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="detect")
    opened: list[Any] = []
    try:
        return await _assemble(settings, detect_pool, opened)
    except BaseException:
        for closer in reversed(opened):
            try:
                await closer()
            except Exception:
                log.exception("cleanup after a failed start-up failed")
        detect_pool.shutdown(wait=False, cancel_futures=True)
        raise


async def _assemble(settings: Settings, detect_pool: ThreadPoolExecutor, opened: list[Any]) -> Runtime:
    """Read top to bottom: each part is made once, from the parts above it."""
    loop = asyncio.get_running_loop()
    url = settings.storage.url
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    db = await Database.connect(url)
    opened.append(db.close)
    keys = load_key_ring(settings)  # one ring wraps the recordings' and the call text's data keys
    if settings.encryption.text:
        await db.use_vault(TextVault(keys))
    store = CallStore(db)
    await store.open()
    opened.append(store.close)
    audit = AuditLog(db)
    await audit.init()
    learning = Learning(db, audit)
    await learning.init()
    hub = Hub()
    sink = Sink(store, audit, hub)

    asr, asr_note = await loop.run_in_executor(detect_pool, load_engine, settings.asr)
    # the channels' pool, sized once the engine says how many streams wait on it at once
    # (Whisper and Moonshine: channels queue on their decode queue, not on threads)
    asr_pool = ThreadPoolExecutor(max(settings.asr.threads or os.cpu_count() or 2, asr.stream_threads),
                                  thread_name_prefix="asr")  # fmt: skip

    async def _stop_asr_pool() -> None:
        asr_pool.shutdown(wait=False, cancel_futures=True)

    opened.append(_stop_asr_pool)
    asr = with_injected_faults(asr)  # off unless the fault benchmark turns it on
    log.info("ASR engine ready: %s", asr_note)
    knowledge = None
    if settings.knowledge.enabled:
        kcfg = settings.knowledge
        knowledge = KnowledgeBase(KnowledgeStore(db, audit), _embed, detect_pool, Gate(kcfg.min_score, kcfg.min_ask))
        await knowledge.start(settings.resolve(kcfg.articles_dir))
    understanding = await build_understanding(settings, detect_pool, knowledge)

    playbooks = PlaybookSet.load(settings.resolve(settings.decision.playbooks_dir))

    async def escalate(call_id: str, target: dict[str, Any]) -> dict[str, Any]:
        log.info("escalation", extra={"call_id": call_id, "queue": target.get("queue"), "role": target.get("role")})
        return {"notified": "supervisors"}

    # each live call's stream: where the decision engine's steps enter and its output leaves
    streams = CallStreams(sink)

    async def call_control(call_id: str, control: str) -> dict[str, Any]:
        out: dict[str, Any] = {"applied": control}
        if control.endswith("_transcript_storage") or control.endswith("_recording"):
            sink.pause_storage(call_id, control.startswith("pause_"))
        if control in ("pause_recording", "resume_recording"):
            out["recorder"] = streams.pause_recording(call_id, control.startswith("pause_"))
            # a platform that can stop sending audio (AudioHook) is asked to: nothing of what
            # is said meanwhile reaches CallCue at all
            out["platform_sessions"] = streams.remote(call_id, control.split("_")[0])
        return out

    dispatcher = ActionDispatcher(publish_to_agent=streams.to_call, publish_to_supervisors=streams.to_supervisors,
                                  publish_hint=streams.hint, escalate=escalate, call_control=call_control)  # fmt: skip
    engine = DecisionEngine(playbooks, streams, dispatcher, learning=learning, enter=streams.enter)
    opened.append(engine.close)
    await engine.restore()

    async def kpis_fn(by: str = "playbook", since: float | None = None, until: float | None = None) -> list[dict]:
        return await kpis(db, by=by, since=since, until=until)  # type: ignore[arg-type]

    supervisor = SupervisorCommands(engine, audit, kpis_fn, learning=learning, writer=sink)

    async def retrain() -> None:
        await retrain_intents(understanding, learning, detect_pool)

    learning.on_dataset_change = retrain
    if await learning.active_dataset() is not None:
        await retrain()
    log.info("decision layer ready: %d playbooks (%s)", len(list(playbooks)), playbooks.digest[:12])

    fallback = PhraseHintPolicy(understanding.phrases) if understanding.phrases is not None else None
    recordings = open_recordings(settings, keys)
    bot, demo_backend = build_bot(settings, knowledge, detect_pool)
    flow_versions = None
    if bot is not None:  # the stored active versions, not the files, answer calls (a rollback outlives a restart)
        flow_versions = await FlowVersions(db, audit).init()
        active = await flow_versions.sync(load_flow_files(settings.resolve(settings.bot.flows_dir)),
                                          promote_on_load=settings.bot.promote_on_load)  # fmt: skip
        bot.flows.clear()
        bot.flows.update(active)
        if active:
            log.info("virtual agent ready: %s", ", ".join(f"{f.id} v{f.version} ({f.digest})" for f in active.values()))
    deps = PipelineDeps(
        asr=asr, asr_pool=asr_pool, detect_pool=detect_pool, vad=settings.vad, pipeline=settings.pipeline,
        max_calls=settings.server.max_calls, detectors=understanding.detectors, sink=sink,
        redactor_factory=understanding.redactor_factory, decider=PlaybookDecider(engine, fallback), streams=streams,
        recordings=recordings, record_hold_s=settings.recording.hold_s,
        record_unredacted=settings.recording.keep_unredacted, bot=bot,
    )  # fmt: skip
    calls = CallManager(deps, reconnect_grace_s=settings.platforms.reconnect_grace_s)
    sink.final_listeners.append(streams.on_final)
    access = CallAccess(calls, store, sink, engine)

    def recording_control(call_id: str, paused: bool) -> None:
        sink.pause_storage(call_id, paused)
        streams.pause_recording(call_id, paused)
        streams.remote(call_id, "pause" if paused else "resume")

    access.recording_control = recording_control
    replies = next((d for d in understanding.detectors if isinstance(d, RepliesDetector)), None)
    if replies is not None:
        access.reply_used = replies.book.used
        async for e in audit.iter_entries(kind=["reply_feedback"], since=time.time() - 180 * 86400):
            replies.book.used(str(e.payload.get("reply_id")), str(e.payload.get("action")))
    auth = Authenticator(settings.auth, Path(settings.config_dir))
    failures = FailureLimiter(settings.auth.max_failures_per_minute)
    agents = AgentGateway(auth=auth, hub=hub, access=access, rejected=sink.rejection,
                          supervisor_handler=supervisor.handle_supervisor_message, failures=failures,
                          allowed_origins=tuple(settings.server.allowed_origins),
                          ended_call_visible_s=settings.server.ended_call_visible_s)  # fmt: skip
    wcfg = settings.platforms.webrtc
    webrtc = WebRTCSessions(calls, sink.rejection, ice_servers=wcfg.ice_servers, idle_timeout_s=settings.platforms.idle_timeout_s,
                            max_sessions=wcfg.max_streams or settings.server.max_calls)  # fmt: skip
    cluster = await _join_cluster(settings, hub=hub, calls=calls, engine=engine, supervisor=supervisor,
                                  access=access, learning=learning)  # fmt: skip
    if cluster is not None:
        opened.append(cluster.close)
    qa = None
    analytics = None
    if settings.analytics.enabled:
        acfg = settings.analytics
        analytics = Analytics(AnalyticsStore(db), _embed, detect_pool, repeat_days=acfg.repeat_days,
                              min_cluster_size=acfg.min_cluster_size, datasets=learning)  # fmt: skip
        await analytics.store.init()
        supervisor.add_ops(AnalyticsCommands(analytics).ops(), needs="analytics")
    if settings.qa.enabled or analytics is not None:
        cards = load_cards(settings.resolve(settings.qa.scorecards_dir)) if settings.qa.enabled else []

        async def call_audit(call_id: str) -> list[dict[str, Any]]:
            return [e.to_dict() for e in await audit.query(call_id=call_id, limit=5000)]

        qa = PostCallQA(cards, store.call_record, sink.qa_evaluation, detect_pool, read_audit=call_audit,
                        write_summary=sink.call_summary,
                        after=[analytics.record_call] if analytics is not None else [])  # fmt: skip
        sink.call_end_listeners.append(qa.call_ended)
        supervisor.add_ops(QaCommands(lambda: qa.cards if qa else [], store, sink).ops(), needs="qa_review")
    bcmds: BotCommands | None = None
    if bot is not None:
        bcmds = BotCommands(bot, sink, flow_versions)
        supervisor.add_ops(bcmds.ops(), needs={**{op: "call_control" for op in bcmds.ops()},
                                               "flow_versions": "flows_manage", "promote_flow": "flows_manage",
                                               "rollback_flow": "flows_manage"})  # fmt: skip
    if knowledge is not None:
        kcmds = KnowledgeCommands(knowledge, audit)
        supervisor.add_ops(kcmds.ops(), needs={"kb_versions": "kb_read", "kb_report": "kb_read", "kb_diff": "kb_read",
                                               "kb_promote": "kb_manage", "kb_rollback": "kb_manage"})
        await kcmds.refresh_standing()
        log.info("QA ready: %s", ", ".join(f"{c.id} v{c.version}" for c in cards) or "no scorecards")
    retention = await Retention(db, audit, recordings, settings.retention).init()
    retention.start()
    opened.append(retention.close)
    forget: list[Any] = [engine.forget_call]
    if cluster is not None and bcmds is not None:  # a flow promoted on one node: every node's new calls take it
        node = cluster
        bcmds.on_change = lambda fid: node.bus.broadcast_state("flows", flow=fid)
        node.on_state["flows"] = lambda _args: bcmds.reload(broadcast=False)
    if cluster is not None:
        forget.append(cluster.erase)
        cluster.on_erased.append(engine.forget_call)
        if recordings is not None:
            cluster.on_erased.append(recordings.erase)
    eraser = Eraser(db, audit, recordings, live=lambda cid: cid in calls.calls, forget=forget,
                    sign_key=keys.keys[keys.current],
                    flush=store.flush)  # fmt: skip
    return Runtime(settings=settings, started_at=time.time(), asr_pool=asr_pool, detect_pool=detect_pool, db=db,
                   store=store, audit=audit, learning=learning, hub=hub, sink=sink, auth=auth, asr=asr,
                   asr_note=asr_note, understanding=understanding, engine=engine, supervisor=supervisor,
                   calls=calls, access=access, agents=agents, auth_failures=failures, webrtc=webrtc,
                   cluster=cluster, qa=qa, analytics=analytics, knowledge=knowledge, recordings=recordings, eraser=eraser, retention=retention, demo_backend=demo_backend)  # fmt: skip


def build_bot(settings: Settings, knowledge: KnowledgeBase | None, pool: Any) -> tuple[BotSetup | None, DemoBackend | None]:
    """The virtual agent's flows (validated now: a bad flow stops the server), its voice
    (loaded on first use), its way to the knowledge base, and the demo backend."""
    cfg = settings.bot
    if not cfg.enabled:
        return None, None
    flows = load_flows(settings.resolve(cfg.flows_dir))  # a bad file stops the server here, naming it
    backend = None
    url = cfg.backend_url
    if not url:
        backend = DemoBackend(cfg.backend_token)
        scheme = "https" if settings.server.tls_cert else "http"
        url = f"{scheme}://{settings.server.host}:{settings.server.port}/demo-backend"

    async def kb_answer(question: str) -> str:
        if knowledge is None or knowledge.index is None or not question.strip():
            return ""
        index = knowledge.index

        def best() -> str:
            hits = index.search(question, k=1)
            if not hits or hits[0].score < knowledge.gate.min_score:
                return ""
            a, b = index.span(hits[0].passage, question)
            return hits[0].passage.text[a:b].strip()

        return str(await asyncio.get_running_loop().run_in_executor(pool, best))

    voice = default_voice if cfg.voice == "piper" else EspeakVoice
    return BotSetup(flows=flows, webhooks=WebhookClient(), voice=voice, knowledge=kb_answer, backend=url,
                    backend_token=cfg.backend_token, handoff_agent=cfg.handoff_agent or None,
                    turn_taking=cfg.turn_taking), backend  # fmt: skip


def recordings_dir(settings: Settings) -> Path:
    cfg = settings.recording
    return settings.resolve(cfg.dir) if cfg.dir else data_dir(settings) / "recordings"


def open_recordings(settings: Settings, keys: KeyRing | None = None) -> RecordingStore | None:
    """The recording store with its key ring, or None when recording is off."""
    if not settings.recording.enabled:
        return None
    return RecordingStore(recordings_dir(settings), keys or load_key_ring(settings))


def _embed(texts: list[str]) -> Any:
    """The intent detector's own sentence encoder (one per process, loaded on first use)."""
    from callcue.understand.encoder import SentenceEncoder

    return SentenceEncoder.load().embed(texts)


async def _join_cluster(settings: Settings, **parts: Any) -> ClusterNode | None:
    """Cluster mode when `[cluster] redis_url` is set: this node joins the others on Redis."""
    cfg = settings.cluster
    if not cfg.redis_url:
        return None
    if settings.storage.url.startswith("sqlite:"):
        log.warning("cluster mode with a SQLite store: each node keeps its own calls and audit chain; "
                    "use one PostgreSQL database for all nodes (docs/deploy.md)")  # fmt: skip
    srv = settings.server
    address = f"{srv.host}:{srv.port}"
    bus = RedisBus(cfg.redis_url, cfg.node_id or address, address=address, owner_ttl_s=cfg.owner_ttl_s,
                   heartbeat_s=cfg.heartbeat_s, control_timeout_s=cfg.control_timeout_s)  # fmt: skip
    calls = parts["calls"]
    node = ClusterNode(bus, load=lambda: load_report(calls, srv), command_error=CommandError, **parts)
    await node.start()
    return node
