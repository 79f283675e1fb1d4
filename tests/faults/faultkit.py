"""Helpers of the fault and abuse suite: cohorts on real sshd hosts, the grader as a subprocess,
and one validator that every case runs on its results folder."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FAULT_LAB = HERE / "lab"
