"""medgate: a pytest-based regression suite that gates releases of clinical language models."""

__version__ = "0.1.0"
