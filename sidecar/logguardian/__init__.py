"""LogGuardian: log anomaly detection sidecar."""

__version__ = "0.1.0"
