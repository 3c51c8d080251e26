"""FiftyOne: browse the evaluation's errors (:mod:`.browse`), review the label audit and
export the fixes (:mod:`.audit`), both through one COCO <-> FiftyOne converter
(:mod:`.convert`)."""

from ssd.integrations.fiftyone.database import pin_database

pin_database()  # before any connection: this project's database service, never another's
