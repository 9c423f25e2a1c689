"""Queue workers scaled with their backlog: probes, the replica decision, the scaler loop."""
