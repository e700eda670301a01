"""Hearth resolver: atproto handle and DID resolution (library and service)."""
