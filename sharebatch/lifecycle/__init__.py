"""Commands on what a run produced: inspect, verify, renew, inbox, doctor."""
