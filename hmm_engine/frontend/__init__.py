"""Audio front end: reading audio and turning it into feature frames."""
