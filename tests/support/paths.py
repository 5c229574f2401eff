"""Where the tests find the examples and the locustfiles they run."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LOCUSTFILES = ROOT / "tests" / "e2e" / "locustfiles"
