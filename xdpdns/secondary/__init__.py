"""Secondary zones: transferred from their primaries (xfr.py reads what a
transfer says, client.py asks, service.py runs the SOA timers and NOTIFY,
storage.py keeps them on disk)."""
