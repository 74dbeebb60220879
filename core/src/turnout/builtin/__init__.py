"""Kinds that ship with turnout, registered through the same hooks as outside plugins."""
