"""Metric series: streaming per-series detection, ad hoc analysis and watched targets."""
