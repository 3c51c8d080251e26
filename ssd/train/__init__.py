"""Training (paper §3): the loop (:mod:`.loop`), data order (:mod:`.sampling`), the
optimiser, schedule and frozen layers (:mod:`.optim`), where it runs (:mod:`.runtime`,
:mod:`.distributed`), checkpoints (:mod:`.state`), ``--resume`` (:mod:`.resume`), the weight
EMA (:mod:`.ema`) and the tracker interface (:mod:`.tracking`). No MLOps tool is imported
here: trackers are handed in by :func:`ssd.stages.train`."""
