"""Automated QA: versioned scorecards answered from what the pipeline knows about a call."""
