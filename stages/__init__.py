"""One thin script per DVC stage: read params and inputs, call `pipeline`, write outputs."""
