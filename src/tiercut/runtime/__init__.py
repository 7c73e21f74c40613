"""The runtime: split inference across real processes (tier servers over gRPC, the device
client, and the stage backends)."""
