"""`matteralign reproduce`: tests the paper's claims on the runs of this benchmark and writes REPORT.md.

claims: pure statistics and verdicts per claim; null: permutation and random-init calibration of
alignment scores; convergence: the small-MLIP family aligned to its best member; reproduce: the CLI.
"""
