"""CallCue: a real-time agent-assist server.

Call audio flows one way: ingress protocol -> audio (decode, resample, VAD) -> ASR ->
understanding (detectors -> signals) -> decisions (hints/actions) -> egress (agent
WebSockets, webhooks) and storage. See docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"
