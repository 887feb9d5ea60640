"""Checkpoint safety: a checkpoint is a file from anywhere, read and rebuilt without running its code.

- `reader`: weights-only reads, the contents checked, saved data settings merged explicitly
- `specs`: the `_target_` allow-list and argument types, checked before anything is built
- `roles`: each model argument takes one kind of class; tensors are plain dense CPU tensors
- `limits`: sizes refused by arithmetic before anything is allocated
"""
