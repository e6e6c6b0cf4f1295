"""Generated gRPC stubs for the mathforge.v1 API (`make protos` regenerates them)."""
