"""Table schemas and the error-code enumeration shared by every stage.

Kept free of Spark imports at module level so annotators can use the error codes.
"""
from schemas.errors import ErrorCode

__all__ = ["ErrorCode"]
