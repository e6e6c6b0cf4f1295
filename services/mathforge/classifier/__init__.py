"""The math classifier: fastText training and scoring, the Classifier service, and the iterative
recall pipeline with domain discovery (DeepSeekMath §2.1)."""
