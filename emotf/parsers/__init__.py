"""Version-tolerant parsers of the production tools' outputs (MotionCor2/3, CTFFIND4/5,
crYOLO) and RELION STAR files. Every parser returns the records of :mod:`emotf.records`
and raises :class:`emotf.records.ParseError` naming the file on malformed input."""
