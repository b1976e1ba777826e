"""CX analytics across calls: per-call facts, drivers, friction, KPIs and emerging topics."""
