"""Test and demo harness: real Envoy processes, a real OTLP gRPC receiver, small mesh apps."""
