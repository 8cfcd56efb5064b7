"""edgekd: take a speech recognizer from server-sized to measured on a Raspberry Pi or phone."""

__version__ = "0.1.0"
