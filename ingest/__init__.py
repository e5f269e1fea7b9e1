"""Receives notifications: parse the body, authenticate (signature, shop, mode), queue durably, answer."""
