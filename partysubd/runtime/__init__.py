"""The I/O edge that runs the core: sockets, the trio loop, signals, systemd, logs."""
