"""Names for the strings that travel on the wire, so signatures say what they carry."""

from typing import NewType

Did = NewType("Did", str)
Handle = NewType("Handle", str)
DocumentId = NewType("DocumentId", str)
ConnId = NewType("ConnId", str)
ChangeHash = NewType("ChangeHash", bytes)
