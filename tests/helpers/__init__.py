"""What the tests share and that is not a fixture: tiny run settings and the CLI runner (runs), the
one bad-input table harness (table), hostile files made from real checkpoints (worlds), images and
index files that are huge decoded or forged (hostile_files), and the faults a real training run loads
as a callback (fault_injection). Fixtures stay in tests/conftest.py."""
