"""Evaluation of embeddings: one road (scoring.score_embeddings) to verification, classification,
retrieval and one-shot figures; the article's protocol, the correction of a classifier, the
robustness suite and the evaluation report."""
