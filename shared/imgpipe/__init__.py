"""imgpipe: image renditions and palettes through a Cloud Tasks queue, with a Rust core."""

__version__ = "0.1.0"
