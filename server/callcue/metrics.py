"""Prometheus metrics. Names follow Prometheus conventions; labels stay low-cardinality
(never a call id), so one busy server does not explode the time-series count."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)

ACTIVE_CALLS = Gauge("callcue_active_calls", "Calls currently streaming")
CALLS_TOTAL = Counter("callcue_calls_total", "Calls started", ["platform"])
AUDIO_SECONDS = Counter("callcue_audio_seconds_total", "Call audio received", ["channel"])
STAGE_LATENCY = Histogram(
    "callcue_stage_latency_seconds",
    "Wall time from the newest audio a result covers (or the item's creation) to the end of a stage",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_SECONDS = Gauge("callcue_recognizer_queue_seconds", "Audio waiting for recognizers, summed over channels")
QUEUE_DEPTH_HIST = Histogram(
    "callcue_recognizer_backlog_seconds", "Per-batch backlog seen by a recognizer worker", buckets=LATENCY_BUCKETS
)
RTF = Histogram(
    "callcue_asr_real_time_factor",
    "Decode seconds per audio second, per batch",
    ["engine"],
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0),
)
ASR_BATCH = Histogram("callcue_asr_batch_size", "Decodes run together in one recognizer batch", ["kind"],
                      buckets=(1, 2, 3, 4, 6, 8, 16))
SHED = Counter("callcue_shed_total", "Work skipped to keep up with real time", ["kind"])
INGRESS_ERRORS = Counter("callcue_ingress_errors_total", "Rejected platform frames", ["platform", "code"])
GAPS = Counter("callcue_audio_gaps_total", "Audio gaps filled with silence", ["platform"])
# parse + hand-off of one platform frame, from the transport's receive to the call having it:
# what the ingress layer adds to every frame's latency (bench/ingress.py reads it)
INGRESS_FRAME = Histogram("callcue_ingress_frame_seconds", "Time to parse and apply one platform frame", ["platform"],
                          buckets=(2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25))
EVENTS_OUT = Counter("callcue_events_published_total", "Events sent to agent/supervisor clients", ["type"])
SLOW_CONSUMERS = Counter("callcue_slow_consumers_total", "Clients disconnected for not keeping up")
AUDIT_FAILURES = Counter("callcue_audit_failures_total", "Audit entries that could not be written (the step was held)", ["kind"])
