"""Data: every source format becomes one validated `Record` type."""

from alignkit.data.records import KINDS, Conversation, Message, Record

__all__ = ["KINDS", "Conversation", "Message", "Record"]
