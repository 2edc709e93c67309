"""Incident explanations (issue 15): a deterministic rules explanation always, and an
LLM one from any OpenAI-compatible server when configured, grounded in the incident's
own context, masked before it leaves the process, budgeted and cached."""
