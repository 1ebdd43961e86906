"""openwan: an open implementation of the Wan 2.1 video generation system."""

__version__ = "0.1.0"
