"""LogGuardian's own gRPC API (`logguardian.v1`): `ingest.proto` and its generated code."""
