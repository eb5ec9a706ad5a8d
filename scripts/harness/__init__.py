"""What the scripts share: process trees (start, signal, stop), free ports, log lines. Standard library only."""
