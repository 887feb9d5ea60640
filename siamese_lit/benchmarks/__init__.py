"""What `python -m siamese_lit.bench` measures: the source articles' reference loops."""
