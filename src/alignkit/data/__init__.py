"""Data: every source format becomes one validated `Record` type."""

from alignkit.data.records import KINDS, Conversation, Message, Record

__all__ = ["KINDS", "Conversation", "Message", "Record"]

# Loaders import datasets/pyarrow lazily inside; import them from their modules:
#   from alignkit.data.load import load_records, split_records, LoadResult
#   from alignkit.data.inspect import inspect_data
