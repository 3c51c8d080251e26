"""Running a trained detector: :mod:`.detector` (resize, forward, post-process),
:mod:`.predict` (the one predictions -> rows, a whole split), ``ssd detect``
(:mod:`.detect`), ``ssd export`` (:mod:`.export`) and the drawings (:mod:`.drawing`)."""
