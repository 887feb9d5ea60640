"""`python -m siamese_lit.demo ckpt_path=PATH`: a page to draw two digits on (siamese_lit.demo.page),
answering whether they are the same digit, which digit each one is, and its nearest gallery digits
(siamese_lit.demo.engine). docs/demo.md tells how to run it and how it is tested in a browser."""
