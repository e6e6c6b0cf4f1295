"""Exact and near-duplicate detection (MinHash LSH over a durable index) and benchmark
decontamination (the n-gram rule of DeepSeekMath §2.1), as a gRPC service and corpus-scale CLI jobs."""
