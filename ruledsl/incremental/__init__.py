"""The incremental engine's parts; the public entry point is ruledsl.monitor.Monitor."""
