"""Hydra takes launchers only from the hydra_plugins namespace, by the name of the module that defines
them: siamese_lit's SLURM launcher (siamese_lit/cluster/launcher.py) under that name
(`_target_: hydra_plugins.siamese_lit_slurm.SlurmLauncher`, conf/hydra/launcher/slurm.yaml)."""

from siamese_lit.cluster.launcher import SlurmLauncher as _SlurmLauncher


class SlurmLauncher(_SlurmLauncher):
    pass
