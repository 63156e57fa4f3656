"""What a user runs: train, evaluate, pretrain, predict, export, verify.

Each task is a plain function of the composed Hydra config (``fcnlab.tasks.train.train(cfg)`` …)
that the top-level scripts wrap; they share one builder of the trainer
(:mod:`fcnlab.tasks.trainer`).
"""
