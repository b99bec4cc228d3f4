import sys
from pathlib import Path

# tests/support is shared by the unit, integration and end-to-end suites.
sys.path.insert(0, str(Path(__file__).resolve().parent))
