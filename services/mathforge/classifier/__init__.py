"""The math classifier: fastText training and scoring, the Classifier service, and the iterative
recall pipeline with domain discovery (PAPER.md §1)."""
