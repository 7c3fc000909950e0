"""Training with a checkpoint per saved epoch and exact resume: the loop and the checkpoint store
(:mod:`geomvol.train.loop`), checkpoints (:mod:`geomvol.train.checkpoint`), objectives and augmentation.
The ``train`` and ``extend_training`` stages (:mod:`geomvol.stages`) publish what the loop computes.
Importing the package loads none of them (nor torch)."""
