"""Evaluation of embeddings: verification, k-NN, one-shot, and (evaluate.py) the article's protocol."""
