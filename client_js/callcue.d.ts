// Types of callcue.js: the events /ws/agent sends and the client's methods.

export type Channel = "customer" | "agent" | string;

/** Every call event the server numbers carries its call and its per-call sequence number. */
export interface Numbered {
  call_id: string;
  /** per call, increasing, stored before it was sent; absent on partial transcripts */
  seq?: number;
}

export interface Word { text: string; start: number; end: number; conf: number }

export interface TranscriptEvent extends Numbered {
  type: "transcript";
  channel: Channel;
  segment_id: number;
  revision: number;
  /** masked: card numbers and secrets never reach a client */
  text: string;
  is_final: boolean;
  start: number;
  end: number;
  words: Word[];
  confidence: number;
  engine: string;
  /** leading words of a partial that later partials keep */
  stable_words: number;
  audio_received_at: number;
  emitted_at: number;
}

export interface Evidence { text?: string; channel?: Channel; start?: number; end?: number; [k: string]: unknown }

export interface SignalEvent extends Numbered {
  type: "signal";
  signal_id: string;
  kind: "intent" | "risk" | "sentiment" | "entity" | "qa" | string;
  name: string;
  confidence: number;
  detector: string;
  detector_version: string;
  evidence: Evidence[];
  attrs: Record<string, unknown>;
  retracted: boolean;
  emitted_at: number;
}

export interface HintEvent extends Numbered {
  type: "hint";
  hint_id: string;
  title: string;
  body: string;
  suggested_reply?: string | null;
  severity: "info" | "warning" | "critical" | string;
  source: string;
  signal_ids: string[];
  attrs: Record<string, unknown>;
  emitted_at: number;
}

/** `attrs` of a knowledge card (a hint with `attrs.card === "knowledge"`): the passage is the
 *  hint's `body`, the answering sentence its `suggested_reply` (`span` gives its place). */
export interface KnowledgeCard {
  card: "knowledge";
  action_id: string;
  passage_id: string;
  doc_id: string;
  section: string;
  url: string;
  span: [number, number];
  why: string[];
  kb_version: number;
  confidence: number;
  alternatives: { passage_id: string; title: string; section: string; score: number }[];
  question: string;
}

export interface KnowledgeHintEvent extends HintEvent { attrs: KnowledgeCard & Record<string, unknown> }

export interface KnowledgeSearchResult {
  passage_id: string; doc_id: string; title: string; section: string; text: string; url: string;
  score: number; dense: number; lexical: number; entity: string | null; why: string[];
}

export interface KnowledgeSearchReply { kb_version: number; query: string; results: KnowledgeSearchResult[] }

export declare function isKnowledgeCard(ev: unknown): ev is KnowledgeHintEvent;
export declare function searchKnowledge(baseUrl: string | URL, token: string, q: string,
  options?: { k?: number; fetchImpl?: typeof fetch }): Promise<KnowledgeSearchReply>;

export interface CallStartedEvent extends Numbered {
  type: "call_started";
  agent_id: string | null;
  platform: string;
  channels: Channel[];
  started_at: number;
  metadata: Record<string, unknown>;
}

export interface CallEndedEvent extends Numbered { type: "call_ended"; reason: string }
export interface HintRetractedEvent extends Numbered { type: "hint_retracted"; hint_id: string; reason?: string }

export interface ActionRecord {
  action_id: string;
  call_id: string;
  playbook_id: string;
  playbook_version: string;
  kind: string;
  mode: "auto" | "suggest" | "approve";
  state: string;
  deadline?: number | null;
  [k: string]: unknown;
}

export interface ApprovalRequestEvent {
  type: "approval_request"; call_id: string; seq?: number; firing_id: string; agent_id: string | null;
  playbook_id: string; playbook_version: string; role: string; deadline_s: number; on_expiry: string;
  why: Record<string, unknown>; actions: ActionRecord[];
}
/** The virtual agent waits on a person for a fulfilment step while the caller holds (docs/virtual-agent.md). */
export interface BotApprovalRequestEvent {
  type: "bot_approval_request"; call_id: string; action_id: string; task: string; kind: string; flow: string;
  slots: Record<string, string>; deadline_s: number; deadline_at: number;
}
/** The virtual agent hands the call to a person: what the caller wanted, the slots filled, what it did. */
export interface HandoffEvent {
  type: "handoff"; call_id: string; seq?: number; reason: string; summary: string; task?: string | null;
  slots?: Record<string, string>; done?: unknown[]; transcript?: [string, string][]; [k: string]: unknown;
}
export interface ActionUpdateEvent { type: "action_update"; call_id?: string; seq?: number; action_id: string; state: string; [k: string]: unknown }
export interface AlertEvent { type: "alert"; call_id?: string; seq?: number; [k: string]: unknown }
export interface HelloEvent { type: "hello"; user_id: string; role: "agent" | "supervisor"; protocol: string; server_time: number }
export interface ErrorEvent { type: "error"; code: string; message: string; id?: string; request?: string }

export interface CallSummary {
  call_id: string;
  agent_id: string | null;
  platform: string;
  channels: Channel[];
  started_at: number;
  ended_at?: number | null;
  end_reason?: string | null;
  metadata: Record<string, unknown>;
}

export interface SubscribedReply {
  type: "subscribed";
  call_id: string;
  /** "*": live calls this user may see */
  active_calls?: CallSummary[];
  /** "*": calls that ended within the server's retention, newest first */
  recent_calls?: CallSummary[];
  /** events replayed before live ones: per call, how many */
  replayed?: Record<string, number>;
  /** one call: whether it already ended (its history was replayed) */
  ended?: boolean;
  id?: string;
}

export interface EventMap {
  hello: HelloEvent;
  call_started: CallStartedEvent;
  call_ended: CallEndedEvent;
  transcript: TranscriptEvent;
  signal: SignalEvent;
  hint: HintEvent;
  hint_retracted: HintRetractedEvent;
  alert: AlertEvent;
  approval_request: ApprovalRequestEvent;
  bot_approval_request: BotApprovalRequestEvent;
  handoff: HandoffEvent;
  action_update: ActionUpdateEvent;
  subscribed: SubscribedReply;
  error: ErrorEvent;
  status: StatusEvent;
  event: { type: string; [k: string]: unknown };
}

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed" | "rejected";

export interface StatusEvent {
  state: ConnectionState;
  code?: number;
  reason?: string;
  retryInMs?: number;
  resumed?: boolean;
  protocol?: string;
  user?: { user_id: string; role: string };
}

export interface Reply { type: string; ok?: boolean; id?: string; [k: string]: unknown }

export interface ClientOptions {
  url: string;
  token: string;
  format?: "auto" | "json" | "msgpack";
  WebSocket?: unknown;
  /** msgpack encode/decode (default: the @msgpack/msgpack package, when it loads) */
  codec?: { encode(o: unknown): Uint8Array; decode(b: Uint8Array): unknown };
  tokenInHeader?: boolean;
  minRetryMs?: number;
  maxRetryMs?: number;
  requestTimeoutMs?: number;
}

export declare const EVENT_TYPES: readonly string[];
export declare function tokenProtocol(token: string): string;

export declare class CallCueClient {
  constructor(options: ClientOptions);
  readonly state: ConnectionState;
  readonly protocol: string | null;
  readonly user: { user_id: string; role: string } | null;
  /** call_id -> highest numbered event handled */
  readonly cursors: Map<string, number>;
  on<K extends keyof EventMap>(type: K, fn: (ev: EventMap[K]) => void): () => void;
  connect(): Promise<HelloEvent>;
  close(): void;
  request(message: Record<string, unknown>, timeoutMs?: number): Promise<Reply>;
  subscribe(callId?: string, options?: { history?: boolean }): Promise<SubscribedReply | ErrorEvent>;
  unsubscribe(callId?: string): Promise<Reply>;
  isSubscribed(callId: string): boolean;
  accept(hintId: string): Promise<Reply>;
  dismiss(hintId: string, reason?: string): Promise<Reply>;
  correct(hintId: string, correction: string, reason?: string): Promise<Reply>;
  listActions(filter?: { state?: string; call_id?: string; playbook_id?: string }): Promise<Reply>;
  approve(actionId: string, note?: string): Promise<Reply>;
  reject(actionId: string, reason?: string): Promise<Reply>;
  cancel(actionId: string, reason?: string): Promise<Reply>;
  rollback(actionId: string, reason?: string): Promise<Reply>;
  override(o: { actionId?: string; callId?: string; action?: Record<string, unknown> | null; reason?: string }): Promise<Reply>;
  pausePlaybook(playbookId: string, o?: { callId?: string; reason?: string }): Promise<Reply>;
  resumePlaybook(playbookId: string, o?: { callId?: string }): Promise<Reply>;
  listPlaybooks(): Promise<Reply>;
  auditQuery(filter?: Record<string, unknown>): Promise<Reply>;
  kpis(by?: "playbook" | "agent" | string): Promise<Reply>;
  /** which knowledge articles agents found useful and which they dismissed */
  kbReport(since?: number): Promise<Reply>;
  kbVersions(): Promise<Reply>;
  ping(): Promise<Reply>;
}
