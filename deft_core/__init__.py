"""deft: DEFT-style distribution rewards for filtering and guiding preference alignment."""

from deft_core.errors import DataError, DeftError
from deft_core.pairs import PreferencePair

__version__ = "0.1.0"

__all__ = ["DataError", "DeftError", "PreferencePair", "__version__"]
