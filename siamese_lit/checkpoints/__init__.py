"""Checkpoint safety: a checkpoint is a file from anywhere, read and rebuilt without running its code.

- `reader`: weights-only reads, the contents checked, saved data settings merged explicitly
- `specs`: the `_target_` allow-list and argument types, checked before anything is built
- `roles`: each model argument takes one kind of class (the classes passed in by the layer above)
- `tensors`: plain dense CPU tensors, each backed by its own values; what a checkpoint stores
- `limits`: sizes refused before anything is allocated (a network's counted on the meta device)

Nothing here names a model, an encoder, an objective or a command; nothing here imports Lightning.
"""
