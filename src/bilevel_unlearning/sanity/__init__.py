"""The sanity stage: the miniature's target against its oracle on forget and retain probes."""
