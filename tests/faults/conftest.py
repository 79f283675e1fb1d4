"""Fault suite fixtures: the helpers live in faultkit.py (importable by bench/ too)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
