"""Command lines of the production programs (MotionCor2/3, CTFFIND4/5, crYOLO) as argv lists
(never shell strings), their stdin answers and their output file names."""
