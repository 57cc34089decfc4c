"""lfp's version: recorded in every artifact and part of every cache and resume key."""

__version__ = "0.1.0"
