"""Typed configuration, loaded from TOML and validated with pydantic.

Why pydantic with `extra="forbid"`: a misspelled key in a production config silently falling
back to a default is how a compliance rule ends up off. Every unknown or invalid key stops
the server with a message naming the key and why.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

REPO_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # HTTPS and WSS on the same port when both are set (PEM files; relative to the config)
    tls_cert: str = ""
    tls_key: str = ""
    max_frame_bytes: int = Field(64 * 1024, ge=1024, description="largest WebSocket message accepted from a platform")
    max_calls: int = Field(200, ge=1)
    # /readyz says 503 (send new calls elsewhere) while any channel's recognizer is this far behind
    ready_max_backlog_s: float = Field(2.0, gt=0, le=600)
    # an ended call stays listed on desks and can be opened (replayed) this long after it ended
    ended_call_visible_s: float = Field(8 * 3600, ge=0)
    serve_client: bool = True
    # browser pages on these origins may open /ws/agent besides the server's own origin
    allowed_origins: list[str] = Field(default_factory=list)


class AsrConfig(_Strict):
    # "auto" (English Vosk if found, else Moonshine, else Whisper tiny.en), or any engine
    # registered in callcue.asr.registry: "moonshine", "whisper", "vosk", "off" (no recognition:
    # ingress benchmarks, record-only deployments)
    engine: str = "auto"
    vosk_model_path: str | None = None
    whisper_model_path: str | None = None
    threads: int = Field(0, ge=0, description="decoder threads; 0 = number of cores")
    partial_interval_s: float = Field(0.6, gt=0, le=5)
    # Moonshine: open audio past which a piece of a long segment is decoded once and committed
    # (bounds the cost of every partial; docs/asr.md)
    moonshine_commit_after_s: float = Field(8.0, ge=4, le=30)
    # Moonshine: a partial forces the tokens the last two partials agreed on as its decoder prefix (cheaper)
    moonshine_force_prefix: bool = True
    # Moonshine: partials up to this much more often when the decoders are idle, and up to this
    # much less often when they are busy (1.0 = a fixed partial_interval_s)
    moonshine_adaptive_step: float = Field(2.0, ge=1.0, le=4.0)
    # Moonshine: where the prepared model is cached (default ~/.cache/callcue/models/moonshine-base-en,
    # or $CALLCUE_MODELS_DIR/moonshine-base-en)
    moonshine_cache_dir: str | None = None
    # Moonshine: words a started word is steered to finish (None = the built-in contact-centre
    # list in asr/moonshine_engine.py; [] = no boosting), and the boost in logits
    boost_words: list[str] | None = None
    boost: float = Field(3.0, ge=0, le=10)
    # Whisper: encoder window of a final (30 = Whisper's own; shorter is cheaper, see docs/asr.md)
    whisper_final_window_s: float = Field(25.0, ge=5, le=30)
    # Whisper: most decodes of one window length run together as one batch (1 = never batch)
    whisper_max_batch: int = Field(4, ge=1, le=16)
    # Vosk: ask for a partial at most once per this much audio (each ask walks the lattice)
    vosk_partial_interval_s: float = Field(0.2, ge=0.02, le=2)


    @field_validator("engine")
    @classmethod
    def _engine_name(cls, v: str) -> str:
        # which names exist is the engine registry's business (callcue.asr.registry, a layer
        # above this one): `callcue serve` checks the name against it before it starts
        if not v.isidentifier():
            raise ValueError(f"asr.engine must be an engine name such as auto, moonshine, whisper, vosk or off, got {v!r}")
        return v


class VadConfig(_Strict):
    aggressiveness: int = Field(2, ge=0, le=3)
    frame_ms: Literal[10, 20, 30] = 20
    preroll_ms: int = Field(240, ge=0, le=2000)
    hangover_ms: int = Field(600, ge=60, le=5000)
    max_segment_s: float = Field(15.0, ge=1, le=120)


class PipelineConfig(_Strict):
    # audio waiting for the recognizer, per channel, before ingress is back-pressured
    queue_max_seconds: float = Field(20.0, ge=1, le=600)
    # backlog above which costly partial re-decodes are skipped (shed) to catch up
    shed_backlog_seconds: float = Field(0.5, ge=0.0, le=60)
    history_finals: int = Field(50, ge=1, le=10_000)


class StorageConfig(_Strict):
    url: str = "sqlite:///var/callcue.db"

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not (v.startswith("sqlite:///") or v.startswith("postgresql://") or v.startswith("postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return v


class TokenConfig(_Strict):
    token: str = Field(min_length=8)
    user_id: str = Field(min_length=1)
    # agent: own calls; supervisor: their teams' calls and commands; qa: their teams' calls,
    # recordings and scorecards, no call control; admin: configuration and erasure; auditor:
    # the audit trail and the access log, no transcripts or audio unless granted
    role: Literal["agent", "supervisor", "qa", "admin", "auditor"] = "agent"
    # an agent's teams, or the teams a supervisor or QA lead sees (none: every team)
    teams: list[str] = Field(default_factory=list)
    # extra permissions beyond the role's (auth.py PERMISSIONS), e.g. "read_transcripts" for an auditor
    grants: list[str] = Field(default_factory=list)


class OidcConfig(_Strict):
    # single sign-on: signed JWT bearer tokens from an identity provider, accepted beside the
    # static tokens (which stay for machines); checked against a JWKS file or URL
    enabled: bool = False
    issuer: str = ""
    audience: str = ""
    jwks_file: str = ""
    jwks_url: str = ""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "PS256", "EdDSA"])
    user_claim: str = "sub"
    # a string or a list; the first value that names a CallCue role is the user's role
    role_claim: str = "roles"
    teams_claim: str = "teams"
    grants_claim: str = "callcue_grants"
    leeway_s: float = Field(default=30, ge=0, le=600)


class AuthConfig(_Strict):
    tokens: list[TokenConfig] = Field(default_factory=list)
    oidc: OidcConfig = Field(default_factory=OidcConfig)
    # per client address: more failed authentications than this in a minute are refused
    # without being checked, until the minute has passed
    max_failures_per_minute: int = Field(20, ge=1, le=10_000)
    # bearer tokens a Prometheus scraper sends for /metrics (an admin's token works too); an
    # empty list leaves /metrics open, for a scraper that cannot send one on a closed network
    metrics_tokens: list[str] = Field(default_factory=list)


class PlatformLimits(_Strict):
    """What every platform section may set besides its credentials."""

    enabled: bool = True
    # concurrent streams this platform may hold (0: only [server] max_calls bounds it); one
    # over it is refused in the platform's terms (1013, AudioHook `disconnect`, HTTP 503)
    max_streams: int = Field(0, ge=0, le=100_000)
    # largest message from this platform; unset: [server] max_frame_bytes
    max_frame_bytes: int | None = Field(None, ge=1024, le=16 * 1024 * 1024)


class TwilioPlatformConfig(PlatformLimits):
    # X-Twilio-Signature (HMAC-SHA1 of the stream URL) is checked against each account's token
    validate_signature: bool = True
    auth_tokens: list[str] = Field(default_factory=list)
    # the wss:// URL named in your TwiML, when a proxy changes it on the way here; by default
    # the URL the request came to
    public_url: str | None = None


class NativePlatformConfig(PlatformLimits):
    # `Authorization: Bearer <token>` on the WebSocket upgrade
    tokens: list[str] = Field(default_factory=list)


class AudioSocketPlatformConfig(PlatformLimits):
    host: str = "127.0.0.1"
    port: int = Field(9092, ge=0, le=65535)
    # the protocol has no credentials: only these networks may connect
    allowed_sources: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    # the virtual agent: calls to `flow_port` (0: none) are answered by `flow` and hear it
    # speak; `port` stays the listen-only fork (AudioSocket carries no metadata to name a flow)
    flow: str = ""
    flow_port: int = Field(0, ge=0, le=65535)

    @field_validator("allowed_sources")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for n in v:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError as e:
                raise ValueError(f"{n!r} is not an address or network: {e}") from None
        return v


class AudioForkPlatformConfig(PlatformLimits):
    # `?secret=<one of these>` in the fork URL (or Authorization: Bearer)
    secrets: list[str] = Field(default_factory=list)
    # when the metadata frame does not say (mod_audio_fork sends only what it was given)
    default_sample_rate: Literal[8000, 16000, 24000, 32000, 48000, 64000] = 8000
    default_mix_type: Literal["mono", "stereo", "mixed"] = "mono"
    customer_channel: Literal["left", "right"] = "left"


class AudioHookApiKey(_Strict):
    api_key: str = Field(min_length=1)
    # base64, as Genesys shows it; empty: this key's upgrades are not signed
    client_secret: str = ""


class AudioHookPlatformConfig(PlatformLimits):
    # X-API-KEY values the integration may use, each with its client secret (RFC 9421 signature)
    api_keys: list[AudioHookApiKey] = Field(default_factory=list)
    # a signature's `created` may be this old (the AudioHook profile uses 10 s)
    max_signature_age_s: float = Field(10.0, gt=0, le=3600)
    # which AudioHook channel is the customer: Genesys's `external` is the customer side
    customer_channel: Literal["external", "internal"] = "external"
    # answered when `open` asks for supportedLanguages
    languages: list[str] = Field(default_factory=lambda: ["en-US"])
    # send each final transcript (masked) back to Genesys as `event`s, one per utterance: a
    # Transcription Connector integration shows them, a Monitor integration ignores them
    transcript_events: bool = True
    # the wss:// URL configured in Genesys, when a proxy changes it on the way here (it is
    # signed: @request-target and @authority); by default the URL the request came to
    public_url: str | None = None


class VonagePlatformConfig(PlatformLimits):
    # shared secrets: NCCO endpoint `headers: {"secret": ...}`, `?secret=` in its uri, or
    # `authorization: {"type": "custom", "value": "Bearer <secret>"}`
    secrets: list[str] = Field(default_factory=list)
    # `authorization: {"type": "vonage"}`: the upgrade's JWT is checked (HS256) with these
    # account signature secrets
    signature_secrets: list[str] = Field(default_factory=list)
    application_id: str | None = None
    max_jwt_age_s: float = Field(300.0, gt=0, le=86400)
    # the party on a leg whose NCCO headers do not say `channel`
    default_channel: Literal["customer", "agent"] = "customer"


class WebRTCPlatformConfig(PlatformLimits):
    # browser pages on these origins may POST /webrtc/offer (CORS); the server's own pages
    # need nothing here
    allowed_origins: list[str] = Field(default_factory=list)
    # STUN/TURN URLs for peers beyond the LAN; none are needed on loopback or a LAN
    ice_servers: list[str] = Field(default_factory=list)
    # the party an offer streams when it does not say (`role`)
    default_role: Literal["agent", "customer", "both"] = "agent"


class PlatformsConfig(_Strict):
    """The built-in platforms' sections are typed here; a platform added as one module (see
    docs/ARCHITECTURE.md) declares its own section's model on its `Platform`, and its
    `[platforms.NAME]` table is kept raw here and validated against that model at start-up
    (`platforms/registry.py: platform_config`), where a table no platform claims is an error."""

    model_config = ConfigDict(extra="allow")

    # a platform stream that sends no audio for this long is closed (1008), so idle sockets
    # cannot hold the call cap
    idle_timeout_s: float = Field(15.0, gt=0, le=3600)
    # a call whose stream was lost (or closed for a reconnect, AudioHook) waits this long for
    # the platform to continue it before it ends; 0 ends it at once
    reconnect_grace_s: float = Field(10.0, ge=0, le=600)
    twilio: TwilioPlatformConfig = Field(default_factory=TwilioPlatformConfig)
    native: NativePlatformConfig = Field(default_factory=NativePlatformConfig)
    audiosocket: AudioSocketPlatformConfig = Field(default_factory=AudioSocketPlatformConfig)
    audiofork: AudioForkPlatformConfig = Field(default_factory=AudioForkPlatformConfig)
    audiohook: AudioHookPlatformConfig = Field(default_factory=AudioHookPlatformConfig)
    vonage: VonagePlatformConfig = Field(default_factory=VonagePlatformConfig)
    webrtc: WebRTCPlatformConfig = Field(default_factory=WebRTCPlatformConfig)


class UnderstandingConfig(_Strict):
    phrases_file: str = "phrases.yaml"
    intents: bool = True
    intents_file: str = "intents.yaml"
    entities_file: str = "entities.yaml"
    risks_file: str = "risks.yaml"


class DecisionConfig(_Strict):
    playbooks_dir: str = "playbooks"


class QaConfig(_Strict):
    # score every call that ends with every scorecard in this folder (config/scorecards)
    enabled: bool = True
    scorecards_dir: str = "scorecards"


class EncryptionConfig(_Strict):
    # call text (transcripts, events, signals, hints, QA, summaries, call metadata, audit
    # payloads) sealed at rest under per-call data keys; recordings always are
    text: bool = True
    # key-encryption keys: base64 of 32 bytes, one per line, the current first. Empty: the
    # variable below, else a key created at first start in a `keys` folder beside the database
    key_file: str = ""
    key_env: str = "CALLCUE_DATA_KEYS"


class RecordingConfig(_Strict):
    # record every call's audio (both parties, two channels), redacted before it is written
    enabled: bool = True
    # where recordings go; empty: a `recordings` folder beside the SQLite database (else var/recordings)
    dir: str = ""
    # seconds of audio held in memory for redaction before it is written
    hold_s: float = Field(default=30.0, ge=5, le=300)
    # also keep a copy nothing is silenced in, for users granted `read_unredacted` (no role
    # has it). Off: the redacted copy is the only one. PCI DSS forbids keeping a spoken card
    # security code after authorisation, encrypted or not: turn on only where no card data is taken
    keep_unredacted: bool = False


class RetentionConfig(_Strict):
    # days each artifact is kept after its call ended; 0 keeps it (a call under legal hold
    # keeps everything)
    audio_days: float = Field(default=90, ge=0)
    transcripts_days: float = Field(default=365, ge=0)  # transcripts, signals, hints, feedback, events
    qa_days: float = Field(default=730, ge=0)  # scorecards and summaries
    analytics_days: float = Field(default=730, ge=0)  # per-call fact rows
    topics_days: float = Field(default=90, ge=0)  # uncovered customer utterances
    # the audit trail's own rule: its entries are never removed (the chain is the record of
    # what was done), but after this many days a call's entries lose their payloads (what was
    # said, the evidence), keeping each payload's digest so the chain still verifies; 0 keeps
    audit_payload_days: float = Field(default=0, ge=0)
    sweep_every_s: float = Field(default=3600, ge=10)


class BotConfig(_Strict):
    # the virtual agent: a call whose start names a flow (Twilio customParameters.flow, the
    # native protocol's or a chat's metadata "flow") is answered by it (docs/virtual-agent.md)
    enabled: bool = True
    flows_dir: str = "flows"
    # the agent a handed-off call goes to when the platform named none
    handoff_agent: str = "agent-1"
    # where flow webhooks go ($backend in a flow's url); empty: this server's demo backend
    backend_url: str = ""
    backend_token: str = "demo-backend-token"
    voice: Literal["piper", "espeak"] = "piper"
    # a flow file whose version number is higher than the active version's becomes active
    # when the server starts; false: it is stored, and a supervisor promotes it
    promote_on_load: bool = True
    # end the caller's turn sooner on a complete answer, later on a trailing "and..."
    # (bot/turns.py); false: the VAD's fixed hang-over
    turn_taking: bool = True


class KnowledgeConfig(_Strict):
    # knowledge cards on the agent's desktop while the customer talks (docs/knowledge.md)
    enabled: bool = True
    # imported as the first KB version when the database has none (Markdown, HTML, JSONL)
    articles_dir: str = "knowledge"
    # a card needs its best passage's fused score (dense cosine + BM25 share) this high ...
    min_score: float = Field(default=0.45, ge=0, le=2)
    # ... and the customer's turn this much a request for information (0-1)
    min_ask: float = Field(default=0.5, ge=0, le=1)
    # approved replies the desktop may offer, ranked for the moment
    replies_file: str = "replies.yaml"
    # ordered checklists that tick themselves as they are said
    checklists_file: str = "checklists.yaml"


class AnalyticsConfig(_Strict):
    enabled: bool = True  # a fact row and the uncovered utterances of every call that ends
    repeat_days: float = Field(default=7.0, gt=0, le=365)  # a contact within this many days is a repeat
    min_cluster_size: int = Field(default=5, ge=2, le=500)  # the fewest utterances an emerging topic has


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = True


class ClusterConfig(_Strict):
    """Several nodes on one Redis (and one PostgreSQL store); empty `redis_url` = one node."""

    redis_url: str = ""
    # how this node is named to the others; "" = host:port of this server
    node_id: str = ""
    # ownership keys (call -> node) and the node's own key live this long unless refreshed
    owner_ttl_s: float = Field(15.0, ge=2, le=600)
    heartbeat_s: float = Field(5.0, ge=0.2, le=300)
    # a command for a call another node holds waits this long for that node's answer
    control_timeout_s: float = Field(5.0, ge=0.1, le=120)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if v and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (or be empty for one node)")
        return v


class Settings(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    asr: AsrConfig = Field(default_factory=AsrConfig)
    vad: VadConfig = Field(default_factory=VadConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    platforms: PlatformsConfig = Field(default_factory=PlatformsConfig)
    understanding: UnderstandingConfig = Field(default_factory=UnderstandingConfig)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    qa: QaConfig = Field(default_factory=QaConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    bot: BotConfig = Field(default_factory=BotConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    # directory that relative file names in this config resolve against
    config_dir: str = Field(default=str(REPO_CONFIG_DIR), exclude=True)

    def tls(self) -> dict[str, str]:
        """uvicorn's ssl arguments when a certificate is configured (else plain HTTP/WS)."""
        s = self.server
        if bool(s.tls_cert) != bool(s.tls_key):
            raise ConfigError("[server] tls_cert and tls_key go together")
        return {"ssl_certfile": str(self.resolve(s.tls_cert)), "ssl_keyfile": str(self.resolve(s.tls_key))} if s.tls_cert else {}

    def resolve(self, name: str) -> Path:
        p = Path(name)
        return p if p.is_absolute() else Path(self.config_dir) / p


class ConfigError(Exception):
    """Raised with a message a person can act on: which file, which key, why."""


def _format(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None) -> Settings:
    """Load `path`, else $CALLCUE_CONFIG, else config/callcue.toml, else defaults."""
    candidate = path or os.environ.get("CALLCUE_CONFIG")
    if candidate is None and (REPO_CONFIG_DIR / "callcue.toml").exists():
        candidate = REPO_CONFIG_DIR / "callcue.toml"
    if candidate is None:
        return Settings()
    p = Path(candidate)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"invalid TOML in {p}: {e}") from e
    except RecursionError:
        raise ConfigError(f"invalid TOML in {p}: nested too deeply") from None
    data.setdefault("config_dir", str(p.resolve().parent))
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(e, str(p))) from e
