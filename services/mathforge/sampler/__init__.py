"""The sampler: n completions per prompt with token ids and log-probabilities from versioned policy
weights, over gRPC. Backends: transformers (CPU, small runs) and vLLM (GPU), behind one interface."""
