"""Lightning callbacks (and the checkpoint plugin) that every training run can use: the run record
(``results.json``), atomic checkpoints and resume, iteration budgets, BN statistics recomputed
before evaluation, plain progress lines, wandb prediction images. The configurable ones are
listed in ``conf/callbacks/``."""
