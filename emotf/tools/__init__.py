"""Command lines of the production programs (MotionCor2/3, CTFFIND4/5, crYOLO) as argv lists."""
