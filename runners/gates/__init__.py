"""The gate subsystem: the dummy and real gates (`gate`), the fallback ladder (`ladder`) and the
log-signature matcher (`evidence`)."""
