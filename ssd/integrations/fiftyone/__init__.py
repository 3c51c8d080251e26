"""FiftyOne: browse the evaluation's errors (:mod:`.browse`), review the label audit and
export the fixes (:mod:`.audit`), both through one COCO <-> FiftyOne converter
(:mod:`.convert`)."""
