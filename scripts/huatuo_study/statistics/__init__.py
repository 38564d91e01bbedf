"""Statistics over verdicts: crossed intervals, claims, calibration, rankings, agreement."""
